"""The Trainer: owns the loop, I/O and callbacks around pure, jitted steps."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
import optax
from clu import metric_writers

from jaxclf.calibration import reliability_diagram
from jaxclf.callbacks import (
    Callback,
    EarlyStopping,
    PeriodicCheckpoint,
    PeriodicEvaluation,
    ProgressReporter,
    TrainMetricsLogger,
)
from jaxclf.checkpointing import (
    CHECKPOINT_DIR,
    CheckpointStore,
    abstract_train_state,
    config_differences,
)
from jaxclf.data.loader import Normalizer, TrainLoader, eval_batches
from jaxclf.data.splits import Split
from jaxclf.errors import ConfigError, NonFiniteError, Preempted
from jaxclf.hardware import Hardware
from jaxclf.metrics import EvalMetrics, TrainMetrics
from jaxclf.objectives import Objective
from jaxclf.preemption import PreemptionGuard
from jaxclf.train_state import TrainState, create_train_state, eval_step, train_steps

logger = logging.getLogger(__name__)

# TensorBoard prefix for each evaluation split.
SPLIT_PREFIX = {"train": "train_eval", "validation": "eval", "test": "test"}
NONFINITE_POLICIES = ("stop", "skip")


class Trainer:
    """Fits ``model`` by minimising ``objective`` with ``optimizer``; evaluates on named splits.

    Everything the run writes lands in ``workdir``: TensorBoard event files and
    ``checkpoints/``. With ``resume`` (the default) a ``workdir`` that already
    holds a checkpoint continues from it exactly: the checkpoint holds the
    state (parameters, optimizer, step, randomness), ``config`` and the
    callbacks' state, and batches are addressed by step.

    An update with a non-finite loss or gradient is never applied;
    ``on_nonfinite`` says whether the run then stops (``stop``) or carries on
    (``skip``, counted in ``train/skipped_steps``). SIGTERM or SIGINT during
    ``fit`` saves the step in flight and raises ``Preempted``.
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
        hparams: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        on_nonfinite: str = "stop",
        early_stopping: EarlyStopping | None = None,
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
        if on_nonfinite not in NONFINITE_POLICIES:
            raise ConfigError(f"trainer.on_nonfinite={on_nonfinite} is not valid; choose stop or skip")
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
        self.config = dict(config) if config is not None else None
        self.on_nonfinite = on_nonfinite
        self.early_stopping = early_stopping
        self._periods = (eval_every_steps, checkpoint_every_steps, log_every_steps)
        self.callbacks: list[Callback] = [
            TrainMetricsLogger(log_every_steps),
            ProgressReporter(log_every_steps, progress_bar),
            PeriodicEvaluation(eval_every_steps),
            *([early_stopping] if early_stopping else []),  # its state is current when checkpoints save it
            PeriodicCheckpoint(checkpoint_every_steps),
            *callbacks,
        ]
        self.checkpoints = CheckpointStore(
            os.path.join(workdir, CHECKPOINT_DIR),
            max_checkpoints_to_keep,
            best_mode=early_stopping.mode if early_stopping else None,
        )
        self._writer: metric_writers.MetricWriter | None = None
        self._stop_requested = False

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
        """A fresh state, or the latest readable checkpoint's when resuming
        (with the callbacks' state). Refuses a checkpoint of another config."""
        latest = self.checkpoints.latest_step()
        if latest is None:
            return self._init(jax.random.PRNGKey(self.seed))
        if not self.resume:
            raise ConfigError(
                f"trainer.resume=false but {self.checkpoints.directory} already holds checkpoints "
                f"(latest step {latest}); set trainer.resume=true to continue or choose another hydra.run.dir"
            )
        restored = self.checkpoints.restore_latest_good(self._abstract_state(), check_meta=self._check_config)
        if restored is None:
            logger.warning("No readable checkpoint in %s: starting afresh", self.checkpoints.directory)
            return self._init(jax.random.PRNGKey(self.seed))
        state, meta = restored
        callback_states = meta.get("callbacks", {})
        for callback in self.callbacks:
            if type(callback).__name__ in callback_states:
                callback.load_state_dict(callback_states[type(callback).__name__])
        logger.info("Resuming from the checkpoint of step %d in %s", int(state.step), self.checkpoints.directory)
        return state

    def _check_config(self, meta: Mapping[str, Any]) -> None:
        """A run directory belongs to one config: resuming with another is refused."""
        if self.config is None or "config" not in meta:
            return
        differences = config_differences(meta["config"], self.config)
        if differences:
            raise ConfigError(
                f"{self.workdir} holds a run of another config; differing keys: {'; '.join(differences)} "
                f"(only run length, logging, checkpointing and data location keys may change on resume); "
                f"choose another hydra.run.dir"
            )

    def restore_latest(self) -> TrainState:
        """The latest readable checkpoint of this run (for ``mode=evaluate``)."""
        if self.checkpoints.latest_step() is None:
            raise ConfigError(f"no checkpoint to evaluate in {self.checkpoints.directory}; train first (mode=fit)")
        restored = self.checkpoints.restore_latest_good(self._abstract_state())
        if restored is None:
            raise ConfigError(f"no readable checkpoint in {self.checkpoints.directory}")
        return restored[0]

    def save_checkpoint(self, step: int, state: TrainState, metric: float | None = None) -> None:
        """Saves ``state`` with the config and callback state (in the background)
        after flushing the event files, so that a run killed later still has its
        TensorBoard history up to here. A step already saved is left alone."""
        if self._writer is not None:
            self._writer.flush()
        states = {type(callback).__name__: callback.state_dict() for callback in self.callbacks}
        callback_states = {name: state for name, state in states.items() if state is not None}
        meta = {"config": self.config, "callbacks": callback_states}
        if self.checkpoints.save(step, state, meta, metric=metric):
            for callback in self.callbacks:
                callback.on_checkpoint(self, step)

    def request_stop(self) -> None:
        """Ends ``fit`` after the current call (callbacks use this, e.g. early stopping)."""
        self._stop_requested = True

    def _stopping(self) -> bool:
        return self._stop_requested or (self.early_stopping is not None and self.early_stopping.stopped_at is not None)

    def is_finished(self, state: TrainState) -> bool:
        """Whether ``fit`` from ``state`` has nothing left to do."""
        return int(state.step) >= self.max_steps or self._stopping()

    def best_state(self, state: TrainState) -> TrainState:
        """With early stopping, the state of the best validation evaluation
        (restored from its checkpoint); otherwise ``state``."""
        best_step = self.early_stopping.best_step if self.early_stopping else None
        if best_step is None or best_step == int(state.step):
            return state
        stopping = self.early_stopping
        logger.info("Testing the best checkpoint: step %d, validation %s %.4f", best_step, stopping.metric, stopping.best_value)
        return self.checkpoints.restore(self._abstract_state(), best_step)[0]

    # -- training -------------------------------------------------------------

    def _steps_in_next_call(self, step: int) -> int:
        """Steps to fuse into the next call: at most ``steps_per_call``, never
        crossing a multiple of a logging/eval/checkpoint period or ``max_steps``."""
        boundary = min([self.max_steps] + [(step // period + 1) * period for period in self._periods])
        return min(self.steps_per_call, boundary - step)

    def fit(self, state: TrainState | None = None) -> TrainState:
        """Trains from ``state`` (default: the initial or resumed state) up to
        ``max_steps`` or until a callback requests a stop."""
        state = self.initial_state() if state is None else state
        step = int(state.step)
        if step == 0 and self.hparams:
            self.writer.write_hparams(self.hparams)
        for callback in self.callbacks:
            callback.on_fit_start(self, state)
        with PreemptionGuard() as preemption:
            while step < self.max_steps and not self._stopping():  # the host's count: no device sync
                num_steps = self._steps_in_next_call(step)
                batches = self.train_loader.batches(step, num_steps)
                state, self._train_metrics, finite = self._train_steps(state, self._train_metrics, batches, self.objective)
                if self.on_nonfinite == "stop":
                    self._stop_if_nonfinite(step, np.asarray(finite))
                step += num_steps
                for callback in self.callbacks:
                    callback.on_train_steps_end(self, state, step)
                if preemption.received is not None:
                    self._save_and_stop(state, preemption.received)
        for callback in self.callbacks:
            callback.on_fit_end(self, state)
        self.writer.flush()
        return state

    def _stop_if_nonfinite(self, first_step: int, finite: np.ndarray) -> None:
        if finite.all():
            return
        bad_step = first_step + int(np.argmin(finite)) + 1
        self.checkpoints.wait_until_finished()
        if self._writer is not None:
            self._writer.flush()
        latest = self.checkpoints.latest_step()
        last_good = f"step {latest} in {self.checkpoints.directory}" if latest is not None else "none (no checkpoint yet)"
        raise NonFiniteError(
            f"non-finite loss or gradients at step {bad_step} (the update was not applied); last good checkpoint: "
            f"{last_good}; lower optim.learning_rate, set optim.grad_clip_norm, or set trainer.on_nonfinite=skip"
        )

    def _save_and_stop(self, state: TrainState, signal_received: Any) -> None:
        step = int(state.step)
        self.save_checkpoint(step, state)
        self.checkpoints.wait_until_finished()
        self.writer.flush()
        raise Preempted(
            f"{signal_received.name} received: stopped at step {step} of {self.max_steps} with a checkpoint in "
            f"{self.checkpoints.directory}; run the same command again to resume",
            int(signal_received),
        )

    def write_train_metrics(self, step: int) -> dict[str, float]:
        """Writes (``train/*``) and resets the metrics accumulated since the last call."""
        results = {name: float(value) for name, value in self._train_metrics.compute().items()}
        self._train_metrics = jax.device_put(TrainMetrics.empty(), self.hardware.replicated)
        self.writer.write_scalars(step, {f"train/{name}": value for name, value in results.items()})
        return results

    # -- evaluation -----------------------------------------------------------

    def evaluate(self, state: TrainState, split: str, step: int | None = None) -> dict[str, float]:
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
