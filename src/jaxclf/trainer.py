"""The Trainer: owns the loop, I/O and callbacks around pure, jitted steps."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import flax.linen as nn
import jax
import optax
from clu import metric_writers

from jaxclf.callbacks import Callback, PeriodicCheckpoint, PeriodicEvaluation, ProgressReporter, TrainMetricsLogger
from jaxclf.calibration import reliability_diagram
from jaxclf.checkpointing import CHECKPOINT_DIR, CheckpointStore, abstract_train_state
from jaxclf.data.loader import Normalizer, TrainLoader, eval_batches
from jaxclf.data.splits import Split
from jaxclf.errors import ConfigError
from jaxclf.hardware import Hardware
from jaxclf.metrics import EvalMetrics, TrainMetrics
from jaxclf.objectives import Objective
from jaxclf.train_state import TrainState, create_train_state, eval_step, train_steps

logger = logging.getLogger(__name__)

# TensorBoard prefix for each evaluation split.
SPLIT_PREFIX = {"validation": "eval", "test": "test"}


class Trainer:
    """Fits ``model`` by minimising ``objective`` with ``optimizer``; evaluates on named splits.

    Everything the run writes lands in ``workdir``: TensorBoard event files and
    ``checkpoints/``. With ``resume`` (the default) a ``workdir`` that already
    holds a checkpoint continues from it.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        objective: Objective,
        optimizer: optax.GradientTransformation,
        num_classes: int,
        hardware: Hardware,
        train_loader: TrainLoader,
        eval_splits: Mapping[str, Split],
        image_shape: tuple[int, ...],
        normalize: Normalizer,
        eval_batch_size: int,
        workdir: str,
        seed: int,
        max_steps: int,
        eval_every_steps: int,
        checkpoint_every_steps: int,
        log_every_steps: int,
        steps_per_call: int = 1,
        resume: bool = True,
        max_checkpoints_to_keep: int = 3,
        progress_bar: bool = True,
        reliability_diagrams: bool = True,
        callbacks: Sequence[Callback] = (),
        hparams: Optional[Mapping[str, Any]] = None,
    ):
        for key, value in [
            ("trainer.max_steps", max_steps),
            ("trainer.eval_every_steps", eval_every_steps),
            ("trainer.checkpoint_every_steps", checkpoint_every_steps),
            ("trainer.log_every_steps", log_every_steps),
            ("trainer.steps_per_call", steps_per_call),
            ("trainer.max_checkpoints_to_keep", max_checkpoints_to_keep),
        ]:
            if value <= 0:
                raise ConfigError(f"{key}={value} is not valid; it must be a positive integer")
        self.model = model
        self.optimizer = optimizer
        self.objective = jax.device_put(objective, hardware.replicated)
        self.num_classes = num_classes
        self.reliability_diagrams = reliability_diagrams
        self.hardware = hardware
        self.train_loader = train_loader
        self.eval_splits = dict(eval_splits)
        self.eval_batch_size = eval_batch_size
        self.workdir = workdir
        self.seed = seed
        self.max_steps = max_steps
        self.steps_per_call = steps_per_call
        self.resume = resume
        self.hparams = dict(hparams or {})
        self._periods = (eval_every_steps, checkpoint_every_steps, log_every_steps)
        self.callbacks: list[Callback] = [
            TrainMetricsLogger(log_every_steps),
            ProgressReporter(log_every_steps, progress_bar),
            PeriodicEvaluation(eval_every_steps),
            PeriodicCheckpoint(checkpoint_every_steps),
            *callbacks,
        ]
        self.checkpoints = CheckpointStore(os.path.join(workdir, CHECKPOINT_DIR), max_checkpoints_to_keep)
        self._writer: Optional[metric_writers.MetricWriter] = None

        self.image_shape = tuple(image_shape)
        self._init = jax.jit(
            functools.partial(create_train_state, model, optimizer, self.image_shape), out_shardings=hardware.replicated
        )
        self.normalize = normalize

        def normalized(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
            return {**batch, "image": normalize(batch["image"])}

        self._train_steps = jax.jit(
            lambda state, metrics, batches, objective: train_steps(state, metrics, normalized(batches), objective),
            donate_argnums=(0, 1),
        )
        self._eval_step = jax.jit(lambda state, metrics, batch: eval_step(state, metrics, normalized(batch)), donate_argnums=(1,))
        self._train_metrics = jax.device_put(TrainMetrics.empty(), hardware.replicated)

    @property
    def writer(self) -> metric_writers.MetricWriter:
        """CLU's default writer (TensorBoard event files in ``workdir``), opened
        on first use: a run that writes nothing leaves no event file."""
        if self._writer is None:
            self._writer = metric_writers.create_default_writer(self.workdir, just_logging=jax.process_index() > 0)
        return self._writer

    # -- state ----------------------------------------------------------------

    def _abstract_state(self) -> TrainState:
        return abstract_train_state(self.model, self.optimizer, self.image_shape, self.hardware.replicated)

    def initial_state(self) -> TrainState:
        """A fresh state, or the latest checkpoint's when resuming."""
        latest = self.checkpoints.latest_step()
        if latest is None:
            return self._init(jax.random.PRNGKey(self.seed))
        if not self.resume:
            raise ConfigError(
                f"trainer.resume=false but {self.checkpoints.directory} already holds checkpoints "
                f"(latest step {latest}); set trainer.resume=true to continue or choose another hydra.run.dir"
            )
        logger.info("Resuming from the checkpoint of step %d in %s", latest, self.checkpoints.directory)
        return self.checkpoints.restore(self._abstract_state(), latest)

    def restore_latest(self) -> TrainState:
        """The latest checkpoint of this run (for ``mode=evaluate``)."""
        latest = self.checkpoints.latest_step()
        if latest is None:
            raise ConfigError(f"no checkpoint to evaluate in {self.checkpoints.directory}; train first (mode=fit)")
        return self.checkpoints.restore(self._abstract_state(), latest)

    def save_checkpoint(self, step: int, state: TrainState) -> None:
        """Saves ``state`` (in the background) after flushing the event files, so
        that a run killed later still has its TensorBoard history up to here."""
        if self._writer is not None:
            self._writer.flush()
        self.checkpoints.save(step, state)
        for callback in self.callbacks:
            callback.on_checkpoint(self, step)

    # -- training -------------------------------------------------------------

    def _steps_in_next_call(self, step: int) -> int:
        """Steps to fuse into the next call: at most ``steps_per_call``, never
        crossing a multiple of a logging/eval/checkpoint period or ``max_steps``."""
        boundary = min([self.max_steps] + [(step // period + 1) * period for period in self._periods])
        return min(self.steps_per_call, boundary - step)

    def fit(self) -> TrainState:
        """Trains from the initial (or resumed) state up to ``max_steps``."""
        state = self.initial_state()
        step = int(state.step)
        if step == 0 and self.hparams:
            self.writer.write_hparams(self.hparams)
        for callback in self.callbacks:
            callback.on_fit_start(self, state)
        while step < self.max_steps:
            num_steps = self._steps_in_next_call(step)
            batches = self.train_loader.batches(step, num_steps)
            state, self._train_metrics = self._train_steps(state, self._train_metrics, batches, self.objective)
            step += num_steps
            for callback in self.callbacks:
                callback.on_train_steps_end(self, state, step)
        for callback in self.callbacks:
            callback.on_fit_end(self, state)
        self.writer.flush()
        return state

    def write_train_metrics(self, step: int) -> dict[str, float]:
        """Writes (``train/*``) and resets the metrics accumulated since the last call."""
        results = {name: float(value) for name, value in self._train_metrics.compute().items()}
        self._train_metrics = jax.device_put(TrainMetrics.empty(), self.hardware.replicated)
        self.writer.write_scalars(step, {f"train/{name}": value for name, value in results.items()})
        return results

    # -- evaluation -----------------------------------------------------------

    def evaluate(self, state: TrainState, split: str, step: Optional[int] = None) -> dict[str, float]:
        """Metrics of the predicted distribution over every example of ``split``:
        hard-label NLL (as ``loss`` and ``nll``), accuracy, top-5 accuracy (more
        than 5 classes), expected calibration error, Brier score."""
        step = int(state.step) if step is None else step
        metrics = jax.device_put(EvalMetrics.empty(), self.hardware.replicated)
        for batch in eval_batches(self.eval_splits[split], self.eval_batch_size, self.hardware):
            metrics = self._eval_step(state, metrics, batch)
        results = {name: float(value) for name, value in metrics.compute().items()}
        if self.num_classes <= 5:
            del results["top5_accuracy"]
        prefix = SPLIT_PREFIX.get(split, split)
        self.writer.write_scalars(step, {f"{prefix}/{k}": v for k, v in results.items()})
        if self.reliability_diagrams:
            title = f"{split}, step {step}: ECE {results['ece']:.4f}"
            image = reliability_diagram(**metrics.ece.as_numpy(), title=title)
            self.writer.write_images(step, {f"{prefix}/reliability_diagram": image[None]})
        results["num_examples"] = metrics.num_examples
        for callback in self.callbacks:
            callback.on_eval_end(self, state, step, split, results)
        return results

    def close(self) -> None:
        self.train_loader.close()
        self.checkpoints.wait_until_finished()
        self.checkpoints.close()
        if self._writer is not None:
            self._writer.close()
