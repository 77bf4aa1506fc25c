"""Lightning-style callbacks: behaviour attached to the Trainer's events.

The Trainer's own logging, progress reporting, periodic evaluation and
checkpointing are callbacks too. A user adds behaviour by listing a
``Callback`` subclass under ``trainer.callbacks`` in the config::

    trainer:
      callbacks:
        my_probe: {_target_: mypackage.MyProbe, every_steps: 100}

Events (``step`` is the number of training steps completed):

- ``on_fit_start(trainer, state)``: after initialisation or resume;
- ``on_train_steps_end(trainer, state, step)``: after each jitted call, which
  runs ``trainer.steps_per_call`` steps or fewer; calls never cross a logging,
  evaluation or checkpoint boundary;
- ``on_eval_end(trainer, state, step, split, results)``;
- ``on_checkpoint(trainer, step)``: a checkpoint of ``step`` was started;
- ``on_fit_end(trainer, state)``: training reached ``max_steps`` or was
  asked to stop (``trainer.request_stop()``).

A callback with state that must survive a resume returns it from
``state_dict()`` (JSON-serialisable) and takes it back in
``load_state_dict()``; every checkpoint saves it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from clu import metric_writers, periodic_actions

from jaxclf.errors import ConfigError
from jaxclf.metrics import VALIDATION_METRICS

if TYPE_CHECKING:
    from jaxclf.train_state import TrainState
    from jaxclf.trainer import Trainer


class Callback:
    """Base class: override the events you need."""

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        pass

    def on_train_steps_end(self, trainer: Trainer, state: TrainState, step: int) -> None:
        pass

    def on_eval_end(
        self, trainer: Trainer, state: TrainState, step: int, split: str, results: Mapping[str, float]
    ) -> None:
        pass

    def on_checkpoint(self, trainer: Trainer, step: int) -> None:
        pass

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        pass

    def state_dict(self) -> dict[str, Any] | None:
        """State to save in checkpoints (None: nothing to save)."""
        return None

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


class _PeriodicCallback(Callback):
    """Runs ``self.apply(trainer, state, step)`` every ``every_steps`` through
    ``clu.periodic_actions.PeriodicCallback``, which wants to see every step."""

    def __init__(self, every_steps: int):
        self.every_steps = every_steps
        self._action: periodic_actions.PeriodicCallback | None = None
        self._last_seen: int | None = None

    def apply(self, trainer: Trainer, state: TrainState, step: int) -> None:
        raise NotImplementedError

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        self._action = periodic_actions.PeriodicCallback(
            every_steps=self.every_steps, callback_fn=self._apply_at, pass_step_and_time=False
        )
        self._last_seen = int(state.step)

    def on_train_steps_end(self, trainer: Trainer, state: TrainState, step: int) -> None:
        for passed in range(self._last_seen + 1, step):
            self._action(passed)  # never a trigger: calls end at boundaries
        self._action(step, trainer=trainer, state=state, completed_steps=step)
        self._last_seen = step

    def _apply_at(self, trainer: Trainer, state: TrainState, completed_steps: int) -> None:
        self.apply(trainer, state, completed_steps)


class TrainMetricsLogger(_PeriodicCallback):
    """Writes the training metrics accumulated since the last write: ``train/*``."""

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        super().on_fit_start(trainer, state)
        self._written_at = self._last_seen

    def apply(self, trainer: Trainer, state: TrainState, step: int) -> None:
        trainer.write_train_metrics(step)
        self._written_at = step

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        if self._last_seen > self._written_at:  # steps after the last full period
            self.apply(trainer, state, self._last_seen)


class PeriodicEvaluation(_PeriodicCallback):
    """Evaluates on the validation split every ``every_steps`` (``eval/*``).

    The final step is left to the evaluation that follows training, except
    with early stopping, where the final state competes too."""

    def apply(self, trainer: Trainer, state: TrainState, step: int) -> None:
        if step < trainer.max_steps or trainer.early_stopping is not None:
            trainer.evaluate(state, "validation", step=step)

    def on_train_steps_end(self, trainer: Trainer, state: TrainState, step: int) -> None:
        super().on_train_steps_end(trainer, state, step)
        if step == trainer.max_steps and step % self.every_steps and trainer.early_stopping is not None:
            trainer.evaluate(state, "validation", step=step)


class PeriodicCheckpoint(_PeriodicCallback):
    """Saves a checkpoint every ``every_steps`` and at the end of training."""

    def apply(self, trainer: Trainer, state: TrainState, step: int) -> None:
        trainer.save_checkpoint(step, state)

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        trainer.save_checkpoint(int(state.step), state)  # no-op if saved already
        trainer.checkpoints.wait_until_finished()


METRIC_MODES = ("max", "min")


class EarlyStopping(Callback):
    """Stops training when the validation ``metric`` has not improved by more
    than ``min_delta`` for ``patience`` evaluations in a row, and keeps the
    checkpoint of the best evaluation so the final test uses it.

    Its state (best value and step, evaluations without improvement, whether
    it stopped) is saved in every checkpoint, so a resumed run carries on
    counting where the interrupted one was."""

    def __init__(self, metric: str, mode: str = "max", patience: int = 5, min_delta: float = 0.0):
        if metric not in VALIDATION_METRICS:
            raise ConfigError(
                f"trainer.early_stopping.metric={metric} is not valid; choose one of {', '.join(VALIDATION_METRICS)}"
            )
        if mode not in METRIC_MODES:
            raise ConfigError(f"trainer.early_stopping.mode={mode} is not valid; choose max or min")
        if patience < 1:
            raise ConfigError(f"trainer.early_stopping.patience={patience} is not valid; it must be a positive integer")
        if min_delta < 0:
            raise ConfigError(f"trainer.early_stopping.min_delta={min_delta} is not valid; it must be non-negative")
        self.metric, self.mode, self.patience, self.min_delta = metric, mode, patience, min_delta
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.evaluations_without_improvement = 0
        self.stopped_at: int | None = None
        self._fitting = False

    def _improves(self, value: float) -> bool:
        if self.best_value is None:
            return True
        if self.mode == "max":
            return value > self.best_value + self.min_delta
        return value < self.best_value - self.min_delta

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        self._fitting = True

    def on_eval_end(self, trainer, state, step, split, results) -> None:
        if not self._fitting or split != "validation" or self.stopped_at is not None:
            return  # only evaluations during training count
        value = float(results[self.metric])
        if self._improves(value):
            self.best_value, self.best_step, self.evaluations_without_improvement = value, step, 0
            trainer.save_checkpoint(step, state, metric=value)
            return
        self.evaluations_without_improvement += 1
        if self.evaluations_without_improvement >= self.patience:
            self.stopped_at = step
            trainer.request_stop()

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        self._fitting = False

    _STATE = ("best_value", "best_step", "evaluations_without_improvement", "stopped_at")

    def state_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._STATE}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key in self._STATE:
            setattr(self, key, state[key])


class _PrefixedWriter(metric_writers.MetricWriter):
    """Forwards scalars to ``writer`` with ``prefix/`` in front of each name."""

    def __init__(self, writer: metric_writers.MetricWriter, prefix: str):
        self._writer, self._prefix = writer, prefix

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        self._writer.write_scalars(step, {f"{self._prefix}/{k}": v for k, v in scalars.items()})

    def write_images(self, step, images):
        self._writer.write_images(step, images)

    def write_videos(self, step, videos):
        self._writer.write_videos(step, videos)

    def write_audios(self, step, audios, *, sample_rate):
        self._writer.write_audios(step, audios, sample_rate=sample_rate)

    def write_texts(self, step, texts):
        self._writer.write_texts(step, texts)

    def write_histograms(self, step, arrays, num_buckets=None):
        self._writer.write_histograms(step, arrays, num_buckets)

    def write_summaries(self, step, values, metadata=None):
        self._writer.write_summaries(step, values, metadata)

    def write_hparams(self, hparams):
        self._writer.write_hparams(hparams)

    def flush(self):
        self._writer.flush()

    def close(self):
        pass  # the trainer owns and closes the wrapped writer


class ProgressReporter(Callback):
    """Steps/s to TensorBoard (``train/steps_per_sec``, via CLU's ``ReportProgress``)
    and a console progress bar with ETA."""

    def __init__(self, every_steps: int, progress_bar: bool = True):
        self.every_steps = every_steps
        self.progress_bar = progress_bar
        self._report: periodic_actions.ReportProgress | None = None
        self._bar = None
        self._last_seen = 0

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        import jax
        from tqdm.auto import tqdm

        self._last_seen = int(state.step)
        self._report = periodic_actions.ReportProgress(
            num_train_steps=trainer.max_steps,
            writer=_PrefixedWriter(trainer.writer, "train"),
            every_steps=self.every_steps,
            every_secs=None,
        )
        self._report(self._last_seen, time.monotonic())  # starts the clock; never reports
        self._bar = tqdm(
            total=trainer.max_steps,
            initial=self._last_seen,
            unit="step",
            dynamic_ncols=True,
            disable=not self.progress_bar or jax.process_index() > 0,
        )

    def on_train_steps_end(self, trainer: Trainer, state: TrainState, step: int) -> None:
        now = time.monotonic()
        for passed in range(self._last_seen + 1, step + 1):
            self._report(passed, now)
        self._bar.update(step - self._last_seen)
        self._last_seen = step

    def on_eval_end(self, trainer, state, step, split, results) -> None:
        if self._bar is not None:  # None when evaluating outside fit
            self._bar.set_postfix({f"{split}_accuracy": f"{results['accuracy']:.4f}"}, refresh=False)

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        self._bar.close()
