"""Host batches -> global ``jax.Array``s sharded over the mesh's ``data`` axis.

Training batches are addressed by step number: the batch of step ``s`` comes
from epoch ``s // steps_per_epoch`` (a seeded permutation of the split; the
incomplete last batch of each epoch is dropped) at position
``s % steps_per_epoch``, and its augmentation draws from a generator seeded by
``(seed, s, process)``. A restart at step ``k`` therefore sees exactly the
batches an uninterrupted run sees, with no work proportional to ``k``.

Host work (gathering, decoding, augmenting) for the next ``prefetch``
calls' steps runs in background threads while the device trains. Batches carry raw
pixels (uint8 for real data: a quarter of float32's bytes to move); the
Trainer normalises them on device with a ``Normalizer``.

Evaluation batches cover every example exactly once: the last batch is padded
and a ``mask`` marks the real examples.

Each process reads and augments only its own rows of every global batch (the
rows its devices hold); one ``make_array_from_process_local_data`` call turns
the slices into global arrays. The global batch of a step is the same
whatever the number of processes.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
from collections.abc import Iterator, Mapping, Sequence

import jax
import numpy as np

from jaxclf.data.augment import BatchRng
from jaxclf.data.splits import Split
from jaxclf.errors import ConfigError
from jaxclf.hardware import Hardware

Batch = dict[str, jax.Array]
HostBatch = dict[str, np.ndarray]


def _check_batch_size(key: str, batch_size: int, hardware: Hardware) -> None:
    if batch_size <= 0 or batch_size % hardware.num_devices:
        raise ConfigError(
            f"{key}={batch_size} is not valid; it must be a positive multiple of the "
            f"device count ({hardware.num_devices})"
        )


def _process_rows(batch_size: int, hardware: Hardware) -> np.ndarray:
    """Positions in a global batch that this process's devices hold (one contiguous block)."""
    indices = hardware.batch_sharding().addressable_devices_indices_map((batch_size,)).values()
    blocks = {index[0].indices(batch_size)[:2] for index in indices if index is not None}
    rows = np.concatenate([np.arange(start, stop) for start, stop in sorted(blocks)])
    if np.any(np.diff(rows) != 1):  # pragma: no cover - meshes from jax.make_mesh keep a process's devices together
        raise RuntimeError(f"process {jax.process_index()} holds rows that are not one block of the batch")
    return rows


class Normalizer:
    """Raw pixels -> float32 ``(x - mean) / std``, per channel (NumPy or jax arrays)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = np.asarray(mean, np.float32)
        self.scale = 1.0 / np.asarray(std, np.float32)

    def __call__(self, images):
        return (images.astype(np.float32) - self.mean) * self.scale


class TrainLoader:
    """Shuffled, augmented training batches of a fixed global size, random access by step."""

    def __init__(
        self,
        split: Split,
        batch_size: int,
        seed: int,
        hardware: Hardware,
        prefetch: int = 2,
        workers: int = 2,
    ):
        _check_batch_size("data.batch_size", batch_size, hardware)
        if batch_size > len(split):
            raise ConfigError(f"data.batch_size={batch_size} is larger than the training split ({len(split)} examples)")
        self.split = split
        self.batch_size = batch_size
        self.seed = seed
        self.hardware = hardware
        self.steps_per_epoch = len(split) // batch_size
        self.prefetch = prefetch
        self._process_rows = _process_rows(batch_size, hardware)
        self._pool = concurrent.futures.ThreadPoolExecutor(max(1, workers), thread_name_prefix="jaxclf-loader")
        self._pending: dict[int, concurrent.futures.Future[HostBatch]] = {}
        self._permutation = functools.lru_cache(maxsize=2)(self._epoch_permutation)

    def _epoch_permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.split))

    def indices(self, step: int) -> np.ndarray:
        """Global example indices of the batch consumed by training step ``step`` (0-based)."""
        epoch, position = divmod(step, self.steps_per_epoch)
        start = position * self.batch_size
        return self._permutation(epoch)[start : start + self.batch_size]

    def host_batch(self, step: int) -> HostBatch:
        """This process's rows of step ``step``'s batch: augmented raw images and labels."""
        rows = self.indices(step)[self._process_rows]
        rng = BatchRng([self.seed, step], self.batch_size, self._process_rows) if self.split.augmented else None
        images, labels = self.split.read(rows, rng)
        return {"image": images, "label": labels}

    def batches(self, first_step: int, num_steps: int) -> Batch:
        """Batches of steps ``first_step .. first_step + num_steps - 1``, stacked: ``[num_steps, B, ...]``;
        then starts preparing the steps that follow."""
        steps = range(first_step, first_step + num_steps)
        for stale in [step for step in self._pending if step < first_step]:
            self._pending.pop(stale).cancel()
        host = [self._take(step) for step in steps]
        for step in range(first_step + num_steps, first_step + num_steps + self.prefetch * num_steps):
            if step not in self._pending:
                self._pending[step] = self._pool.submit(self.host_batch, step)
        local = {key: np.stack([batch[key] for batch in host]) for key in ("image", "label")}
        return jax.make_array_from_process_local_data(self.hardware.batch_sharding(leading_axes=1), local)

    def _take(self, step: int) -> HostBatch:
        future = self._pending.pop(step, None)
        return future.result() if future is not None else self.host_batch(step)

    def close(self) -> None:
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)


def eval_batches(split: Split, batch_size: int, hardware: Hardware) -> Iterator[Batch]:
    """Every example once, in order; the last batch is padded, ``mask`` is 1 on real rows.
    The next batch is read while the device evaluates this one."""
    _check_batch_size("data.eval_batch_size", batch_size, hardware)
    process_rows = _process_rows(batch_size, hardware)
    sharding = hardware.batch_sharding()

    def host_batch(start: int) -> HostBatch:
        rows = start + process_rows
        mask = rows < len(split)
        images, labels = split.read(np.where(mask, rows, 0))
        return {"image": images, "label": labels, "mask": mask}

    starts = range(0, len(split), batch_size)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxclf-eval") as pool:
        upcoming = [pool.submit(host_batch, start) for start in starts[:1]]
        for index in range(len(starts)):
            local = upcoming.pop().result()
            if index + 1 < len(starts):
                upcoming.append(pool.submit(host_batch, starts[index + 1]))
            yield jax.make_array_from_process_local_data(sharding, local)


@dataclasses.dataclass(eq=False)
class DataModule:
    """What a Trainer reads (the role of Lightning's DataModule).

    Args:
        train: step-addressed training batches (None when only evaluating).
        eval_splits: the splits it evaluates, by name (``validation``, ``test``, ...).
        eval_batch_size: their batch size; the last batch is padded and masked.
        num_classes: the number of labels.
        top5_min_classes: top-5 accuracy is reported above this many classes.
    """

    train: TrainLoader | None
    eval_splits: Mapping[str, Split]
    eval_batch_size: int
    num_classes: int
    top5_min_classes: int = 10

    def close(self) -> None:
        if self.train is not None:
            self.train.close()
