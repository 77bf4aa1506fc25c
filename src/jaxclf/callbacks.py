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
- ``on_fit_end(trainer, state)``: training reached ``max_steps``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Mapping, Optional

from clu import metric_writers, periodic_actions

if TYPE_CHECKING:
    from jaxclf.train_state import TrainState
    from jaxclf.trainer import Trainer


class Callback:
    """Base class: override the events you need."""

    def on_fit_start(self, trainer: "Trainer", state: "TrainState") -> None:
        pass

    def on_train_steps_end(self, trainer: "Trainer", state: "TrainState", step: int) -> None:
        pass

    def on_eval_end(
        self, trainer: "Trainer", state: "TrainState", step: int, split: str, results: Mapping[str, float]
    ) -> None:
        pass

    def on_checkpoint(self, trainer: "Trainer", step: int) -> None:
        pass

    def on_fit_end(self, trainer: "Trainer", state: "TrainState") -> None:
        pass


class _PeriodicCallback(Callback):
    """Runs ``self.apply(trainer, state, step)`` every ``every_steps`` through
    ``clu.periodic_actions.PeriodicCallback``, which wants to see every step."""

    def __init__(self, every_steps: int):
        self.every_steps = every_steps
        self._action: Optional[periodic_actions.PeriodicCallback] = None
        self._last_seen: Optional[int] = None

    def apply(self, trainer: "Trainer", state: "TrainState", step: int) -> None:
        raise NotImplementedError

    def on_fit_start(self, trainer: "Trainer", state: "TrainState") -> None:
        self._action = periodic_actions.PeriodicCallback(
            every_steps=self.every_steps, callback_fn=self._apply_at, pass_step_and_time=False
        )
        self._last_seen = int(state.step)

    def on_train_steps_end(self, trainer: "Trainer", state: "TrainState", step: int) -> None:
        for passed in range(self._last_seen + 1, step):
            self._action(passed)  # never a trigger: calls end at boundaries
        self._action(step, trainer=trainer, state=state, completed_steps=step)
        self._last_seen = step

    def _apply_at(self, trainer: "Trainer", state: "TrainState", completed_steps: int) -> None:
        self.apply(trainer, state, completed_steps)


class TrainMetricsLogger(_PeriodicCallback):
    """Writes the training metrics accumulated since the last write: ``train/*``."""

    def on_fit_start(self, trainer: "Trainer", state: "TrainState") -> None:
        super().on_fit_start(trainer, state)
        self._written_at = self._last_seen

    def apply(self, trainer: "Trainer", state: "TrainState", step: int) -> None:
        trainer.write_train_metrics(step)
        self._written_at = step

    def on_fit_end(self, trainer: "Trainer", state: "TrainState") -> None:
        if self._last_seen > self._written_at:  # steps after the last full period
            self.apply(trainer, state, self._last_seen)


class PeriodicEvaluation(_PeriodicCallback):
    """Evaluates on the validation split every ``every_steps`` (``eval/*``).

    The final step is left to the evaluation that follows training."""

    def apply(self, trainer: "Trainer", state: "TrainState", step: int) -> None:
        if step < trainer.max_steps:
            trainer.evaluate(state, "validation", step=step)


class PeriodicCheckpoint(_PeriodicCallback):
    """Saves a checkpoint every ``every_steps`` and at the end of training."""

    def apply(self, trainer: "Trainer", state: "TrainState", step: int) -> None:
        trainer.save_checkpoint(step, state)

    def on_fit_end(self, trainer: "Trainer", state: "TrainState") -> None:
        if trainer.checkpoints.latest_step() != int(state.step):
            trainer.save_checkpoint(int(state.step), state)
        trainer.checkpoints.wait_until_finished()


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
        self._report: Optional[periodic_actions.ReportProgress] = None
        self._bar = None
        self._last_seen = 0

    def on_fit_start(self, trainer: "Trainer", state: "TrainState") -> None:
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

    def on_train_steps_end(self, trainer: "Trainer", state: "TrainState", step: int) -> None:
        now = time.monotonic()
        for passed in range(self._last_seen + 1, step + 1):
            self._report(passed, now)
        self._bar.update(step - self._last_seen)
        self._last_seen = step

    def on_eval_end(self, trainer, state, step, split, results) -> None:
        if self._bar is not None:  # None when evaluating outside fit
            self._bar.set_postfix({f"{split}_accuracy": f"{results['accuracy']:.4f}"}, refresh=False)

    def on_fit_end(self, trainer: "Trainer", state: "TrainState") -> None:
        self._bar.close()
