"""Host batches -> global ``jax.Array``s sharded over the mesh's ``data`` axis.

Training batches are addressed by step number: the batch of step ``s`` comes
from epoch ``s // steps_per_epoch`` (a seeded permutation of the split; the
incomplete last batch of each epoch is dropped) at position
``s % steps_per_epoch``. A restart at step ``k`` therefore sees exactly the
batches an uninterrupted run sees, with no work proportional to ``k``.

Evaluation batches cover every example exactly once: the last batch is padded
and a ``mask`` marks the real examples.

Each process assembles only its own slice of every global batch; one
``make_array_from_process_local_data`` call turns the slices into global arrays
(the global batch is the processes' slices side by side).
"""

from __future__ import annotations

from collections.abc import Iterator

import jax
import numpy as np

from jaxclf.data.augment import Augmenter
from jaxclf.data.source import ArraySplit
from jaxclf.errors import ConfigError
from jaxclf.hardware import Hardware

Batch = dict[str, jax.Array]


def _check_batch_size(key: str, batch_size: int, hardware: Hardware) -> None:
    if batch_size <= 0 or batch_size % hardware.num_devices:
        raise ConfigError(
            f"{key}={batch_size} is not valid; it must be a positive multiple of the "
            f"device count ({hardware.num_devices})"
        )


def _process_rows(batch_size: int) -> np.ndarray:
    """Positions in a global batch that this process assembles."""
    per_process = batch_size // jax.process_count()
    return np.arange(jax.process_index() * per_process, (jax.process_index() + 1) * per_process)


class TrainLoader:
    """Shuffled training batches of a fixed global size, random access by step."""

    def __init__(
        self, split: ArraySplit, batch_size: int, seed: int, hardware: Hardware, augment: Augmenter | None = None
    ):
        _check_batch_size("data.batch_size", batch_size, hardware)
        if batch_size > len(split):
            raise ConfigError(
                f"data.batch_size={batch_size} is larger than the training split ({len(split)} examples)"
            )
        self.split = split
        self.batch_size = batch_size
        self.seed = seed
        self.hardware = hardware
        self.augment = augment if augment is not None and augment.active else None
        self.steps_per_epoch = len(split) // batch_size
        self._process_rows = _process_rows(batch_size)
        self._epoch_permutation: tuple[int, np.ndarray] = (-1, np.empty(0, np.int64))

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._epoch_permutation[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._epoch_permutation = (epoch, rng.permutation(len(self.split)))
        return self._epoch_permutation[1]

    def indices(self, step: int) -> np.ndarray:
        """Global example indices of the batch consumed by training step ``step`` (0-based)."""
        epoch, position = divmod(step, self.steps_per_epoch)
        start = position * self.batch_size
        return self._permutation(epoch)[start : start + self.batch_size]

    def _augment_rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, step, jax.process_index()])

    def batches(self, first_step: int, num_steps: int) -> Batch:
        """Batches of steps ``first_step .. first_step + num_steps - 1``, stacked: ``[num_steps, B, ...]``."""
        steps = range(first_step, first_step + num_steps)
        rows = np.stack([self.indices(step)[self._process_rows] for step in steps])
        images = self.split.images[rows]
        if self.augment is not None:
            images = np.stack([self.augment(images[i], self._augment_rng(step)) for i, step in enumerate(steps)])
        local = {"image": images, "label": self.split.labels[rows]}
        return jax.make_array_from_process_local_data(self.hardware.batch_sharding(leading_axes=1), local)


def eval_batches(split: ArraySplit, batch_size: int, hardware: Hardware) -> Iterator[Batch]:
    """Every example once, in order; the last batch is padded, ``mask`` is 1 on real rows."""
    _check_batch_size("data.eval_batch_size", batch_size, hardware)
    process_rows = _process_rows(batch_size)
    sharding = hardware.batch_sharding()
    for start in range(0, len(split), batch_size):
        rows = start + process_rows
        mask = rows < len(split)
        rows = np.where(mask, rows, 0)
        local = {"image": split.images[rows], "label": split.labels[rows], "mask": mask}
        yield jax.make_array_from_process_local_data(sharding, local)
