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
- ``on_log_metrics(trainer, step, metrics)``: a callback logged scalars
  (``trainer.log_metrics``);
- ``teardown(trainer)``: the Trainer is closing.

Callbacks run in ascending ``order``, ties in the order given; checkpointing
runs last so that it saves what the others have just updated. A callback's
state is saved under its ``state_key`` (its name in the config), so two
instances of one class keep theirs apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jaxclf.checkpointing import Retention
from jaxclf.config.choices import MetricMode
from jaxclf.evaluation import EvalResults

if TYPE_CHECKING:
    from jaxclf.train_state import TrainState
    from jaxclf.trainer import Trainer


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

    def best_checkpoint(self) -> tuple[int, str] | None:
        """The step of the best checkpoint and what made it best
        (``"validation accuracy 0.9812"``), if this callback ranks checkpoints."""
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

    def on_log_metrics(self, trainer: Trainer, step: int, metrics: Mapping[str, float]) -> None:
        """After a callback logged scalars with ``trainer.log_metrics``.

        Args:
            trainer: the Trainer calling.
            step: the training step the metrics belong to.
            metrics: scalar values by name (``test_calibrated/ece``).
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
