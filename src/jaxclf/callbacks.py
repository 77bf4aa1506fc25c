"""Lightning-style callbacks: everything around the Trainer's loop.

Evaluation, checkpointing, TensorBoard, the progress bar and early stopping
are callbacks like a user's own, built from the ``callbacks`` config group
(``conf/callbacks/``)::

    python launch.py +callbacks.probe._target_=mypackage.MyProbe

Events (``step`` is the number of training steps completed):

- ``on_fit_start(trainer, state)``: after initialisation or resume;
- ``on_train_steps_end(trainer, state, step)``: after each jitted call, which
  runs ``trainer.steps_per_call`` steps or fewer; calls never cross a
  multiple of any callback's ``every_steps``;
- ``on_eval_end(trainer, state, step, split, results)``: an evaluation during
  ``fit`` (``trainer.evaluate``);
- ``on_save_checkpoint(trainer, step)``: a checkpoint of ``step`` is about to
  be saved (it will hold every callback's ``state_dict()``);
- ``on_fit_end(trainer, state)``: training reached ``max_steps`` or a callback
  set ``trainer.should_stop``;
- ``on_test_end(trainer, state, results)``: the final evaluation, ``{split: results}``;
- ``teardown(trainer)``: the Trainer is closing.

Callbacks run in ascending ``order``, ties in the order given; checkpointing
runs last so that it saves what the others have just updated. A callback's
state is saved under its ``state_key`` (its name in the config), so two
instances of one class keep theirs apart.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Optional

import jax

from jaxclf.argument_rules import check_arguments, target_name
from jaxclf.checkpointing import Retention
from jaxclf.data.config import SplitName
from jaxclf.evaluation import EvalResults
from jaxclf.monitoring import MetricMode, MetricName

if TYPE_CHECKING:
    from jaxclf.train_state import TrainState
    from jaxclf.trainer import Trainer

logger = logging.getLogger(__name__)


def is_due(step: int, every_steps: int | None) -> bool:
    """Whether periodic work of period ``every_steps`` is due after ``step``
    steps (calls end on every period's multiples, so none is skipped)."""
    return every_steps is not None and every_steps > 0 and step % every_steps == 0


class Callback:
    """Base class: override the events you need. The Trainer calls every
    callback's hook in ``order`` (lower first) with itself as ``trainer``.

    Attributes:
        order: where this callback runs among the others (the checkpoint
            callback runs after the evaluation whose metric it ranks).
        every_steps: a period; the Trainer ends its jitted calls on multiples
            of it, so ``on_train_steps_end`` sees each multiple (None: no period).
    """

    order: int = 0
    every_steps: int | None = None  # the Trainer ends jitted calls on its multiples
    _state_key: str | None = None

    @property
    def state_key(self) -> str:
        """The key of this callback's state in checkpoints: its config name when built from config."""
        return self._state_key or type(self).__qualname__

    @state_key.setter
    def state_key(self, key: str) -> None:
        self._state_key = key

    def retention(self) -> Retention | None:
        """Which checkpoints the run keeps, if this callback decides it (at most one may)."""
        return None

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        """Before the first training call of ``fit``.

        Args:
            trainer: the Trainer calling.
            state: the state training starts from (initial or resumed).
        """

    def on_train_steps_end(self, trainer: Trainer, state: TrainState, step: int) -> None:
        """After each jitted call of one or more training steps. Reading ``state``
        waits for the device: do it only where ``step`` is due for this callback.

        Args:
            trainer: the Trainer calling; set ``trainer.should_stop`` to end ``fit``.
            state: the state after the call (still being computed on the device).
            step: the number of steps trained so far.
        """

    def on_eval_end(self, trainer: Trainer, state: TrainState, step: int, split: str, results: EvalResults) -> None:
        """After ``trainer.evaluate`` (during ``fit`` or after it).

        Args:
            trainer: the Trainer calling.
            state: the evaluated state.
            step: its step.
            split: the evaluated split's name (``validation``, ``test``, ...).
            results: its metrics.
        """

    def on_save_checkpoint(self, trainer: Trainer, step: int) -> None:
        """Just before a checkpoint is written, then ``state_dict`` is saved with it.

        Args:
            trainer: the Trainer calling.
            step: the step being saved.
        """

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        """After the last training call of ``fit`` (not after a preemption).

        Args:
            trainer: the Trainer calling.
            state: the final state.
        """

    def on_test_end(self, trainer: Trainer, state: TrainState, results: Mapping[str, EvalResults]) -> None:
        """After ``trainer.test``.

        Args:
            trainer: the Trainer calling.
            state: the tested state.
            results: each tested split's metrics, by name.
        """

    def teardown(self, trainer: Trainer) -> None:
        """When the Trainer closes: release files, writers and threads.

        Args:
            trainer: the Trainer closing.
        """

    def state_dict(self) -> dict[str, Any] | None:
        """State to save in checkpoints, JSON-serialisable (None: nothing to save)."""
        return None

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what ``state_dict`` returned, from a resumed checkpoint.

        Args:
            state: the saved state.
        """


def improves(value: float, best: float | None, mode: MetricMode, min_delta: float = 0.0) -> bool:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` in ``mode``."""
    if best is None:
        return True
    return value > best + min_delta if MetricMode(mode) == MetricMode.max else value < best - min_delta


class PeriodicEvaluation(Callback):
    """Evaluates ``splits`` every ``every_steps`` during training.

    The final step is left to the evaluation that follows training unless
    ``at_end``: then the final state is evaluated too, before it is saved, so
    that it can compete for the best checkpoint."""

    def __init__(self, every_steps: int, splits: Sequence[SplitName] = (SplitName.validation,), at_end: bool = False):
        check_arguments(target_name(PeriodicEvaluation), {"every_steps": every_steps})
        self.every_steps, self.splits, self.at_end = every_steps, [SplitName(split).value for split in splits], at_end

    def on_train_steps_end(self, trainer: Trainer, state: TrainState, step: int) -> None:
        final = step == trainer.config.max_steps
        if (is_due(step, self.every_steps) and not final) or (final and self.at_end):
            for split in self.splits:
                trainer.evaluate(state, split)


class ModelCheckpoint(Callback):
    """Saves a checkpoint every ``every_steps`` and at the end of training,
    keeping the latest ``max_to_keep``.

    With ``monitor`` (a metric of the ``split`` evaluation, higher is better
    with ``mode=max``) it also saves every evaluated state that is the best so
    far and keeps the best checkpoint beside the latest ones: ``best_step``."""

    order = 1  # last: it saves the state the other callbacks have just updated

    def __init__(
        self,
        every_steps: int,
        max_to_keep: int = 3,
        monitor: Optional[MetricName] = None,  # Optional[...]: what hydra-zen turns into a checked Enum
        mode: MetricMode = MetricMode.max,
        split: SplitName = SplitName.validation,
    ):
        check_arguments(target_name(ModelCheckpoint), {"every_steps": every_steps, "max_to_keep": max_to_keep})
        self.every_steps, self.max_to_keep, self.mode = every_steps, max_to_keep, MetricMode(mode)
        self.monitor = None if monitor is None else MetricName(monitor).value
        self.split = SplitName(split).value
        self.best_step: int | None = None
        self.best_value: float | None = None
        self._evaluated: tuple[int, float] | None = None  # the latest monitored evaluation

    def retention(self) -> Retention:
        return Retention(latest=self.max_to_keep, best=1 if self.monitor else 0, mode=self.mode.value)

    def on_eval_end(self, trainer: Trainer, state: TrainState, step: int, split: str, results: EvalResults) -> None:
        if self.monitor and split == self.split:
            self._evaluated = (step, results[self.monitor])

    def on_train_steps_end(self, trainer: Trainer, state: TrainState, step: int) -> None:
        if is_due(step, self.every_steps) or self._is_new_best(step):
            self._save(trainer, state, step)

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        self._save(trainer, state, int(state.step))  # a no-op if saved already
        trainer.checkpoints.wait_until_finished()

    def _metric_at(self, step: int) -> float | None:
        """The monitored metric of ``step``'s state, if it was evaluated."""
        return self._evaluated[1] if self._evaluated is not None and self._evaluated[0] == step else None

    def _is_new_best(self, step: int) -> bool:
        metric = self._metric_at(step)
        return metric is not None and improves(metric, self.best_value, self.mode)

    def _save(self, trainer: Trainer, state: TrainState, step: int) -> None:
        """Saves ``step``; only a new best carries its metric, so the best kept is ``best_step`` (no ties)."""
        metric = None
        if self._is_new_best(step):
            metric = self._metric_at(step)
            self.best_step, self.best_value = step, metric
        trainer.save_checkpoint(step, state, metric=metric)

    def state_dict(self) -> dict[str, Any] | None:
        return {"best_step": self.best_step, "best_value": self.best_value} if self.monitor else None

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best_step, self.best_value = state["best_step"], state["best_value"]


class EarlyStopping(Callback):
    """Stops training when the ``split`` evaluation's ``monitor`` metric has not
    improved by more than ``min_delta`` for ``patience`` evaluations in a row.

    It only asks the Trainer to stop; which checkpoint is best (and tested) is
    ``ModelCheckpoint``'s business. Its state (best value and step,
    evaluations without improvement, where it stopped) survives a resume."""

    def __init__(
        self,
        monitor: MetricName,
        mode: MetricMode = MetricMode.max,
        patience: int = 5,
        min_delta: float = 0.0,
        split: SplitName = SplitName.validation,
    ):
        check_arguments(target_name(EarlyStopping), {"patience": patience, "min_delta": min_delta})
        self.monitor, self.mode = MetricName(monitor).value, MetricMode(mode)
        self.patience, self.min_delta, self.split = patience, min_delta, SplitName(split).value
        self.best_value: float | None = None
        self.best_step: int | None = None
        self.evaluations_without_improvement = 0
        self.stopped_at: int | None = None

    def on_eval_end(self, trainer: Trainer, state: TrainState, step: int, split: str, results: EvalResults) -> None:
        if split != self.split or self.stopped_at is not None:
            return
        value = float(results[self.monitor])
        if improves(value, self.best_value, self.mode, self.min_delta):
            self.best_value, self.best_step, self.evaluations_without_improvement = value, step, 0
            return
        self.evaluations_without_improvement += 1
        if self.evaluations_without_improvement >= self.patience:
            self.stopped_at = step
            trainer.should_stop = True

    _STATE = ("best_value", "best_step", "evaluations_without_improvement", "stopped_at")

    def state_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self._STATE}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        for key in self._STATE:
            setattr(self, key, state[key])


class ProgressBar(Callback):
    """A console progress bar (process 0 only) with ETA, the latest training
    loss (as logged, once it has reached the host: the bar never waits for
    the device) and the latest evaluation's accuracy. Log lines are printed
    above the bar while it is open."""

    def __init__(self) -> None:
        self._bar: Any = None
        self._redirect: contextlib.ExitStack | None = None
        self._loss: jax.Array | None = None  # the latest logged loss, on its way to the host
        self._postfix: dict[str, str] = {}

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        from tqdm.auto import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        self._bar = tqdm(
            total=trainer.config.max_steps,
            initial=int(state.step),
            unit="step",
            dynamic_ncols=True,
            disable=jax.process_index() > 0,
        )
        self._redirect = contextlib.ExitStack()
        self._redirect.enter_context(logging_redirect_tqdm())

    def on_train_steps_end(self, trainer: Trainer, state: TrainState, step: int) -> None:
        self._show_loss(trainer, wait=False)
        self._bar.update(step - self._bar.n)

    def _show_loss(self, trainer: Trainer, wait: bool) -> None:
        """Shows the latest logged training loss once it has reached the host (or ``wait`` for it)."""
        self._loss = trainer.latest_train_metrics.get("loss", self._loss)
        if self._loss is not None and (wait or self._loss.is_ready()):  # type: ignore[attr-defined]  # ArrayImpl's
            self._postfix["loss"] = f"{float(self._loss):.4f}"
        self._bar.set_postfix(self._postfix, refresh=False)

    def on_eval_end(self, trainer: Trainer, state: TrainState, step: int, split: str, results: EvalResults) -> None:
        self._postfix[f"{split}_accuracy"] = f"{results['accuracy']:.4f}"

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        self._show_loss(trainer, wait=True)  # the device has finished: no wait
        self.teardown(trainer)

    def teardown(self, trainer: Trainer) -> None:
        """Closes the bar (also when the run failed): what is printed next starts on its own line."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._redirect is not None:
            self._redirect.close()
            self._redirect = None
