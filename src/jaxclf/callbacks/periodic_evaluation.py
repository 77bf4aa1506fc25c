"""Evaluation during training, every so many steps."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from jaxclf.callbacks.base import Callback, is_due
from jaxclf.config.choices import SplitName
from jaxclf.config.rules import PositiveInt, check_arguments

if TYPE_CHECKING:
    from jaxclf.train_state import TrainState
    from jaxclf.trainer import Trainer


class PeriodicEvaluation(Callback):
    """Evaluates ``splits`` every ``every_steps`` during training.

    The final step is left to the evaluation that follows training unless
    ``at_end``: then the final state is evaluated too, before it is saved, so
    that it can compete for the best checkpoint."""

    def __init__(
        self, every_steps: PositiveInt, splits: Sequence[SplitName] = (SplitName.validation,), at_end: bool = False
    ):
        check_arguments(PeriodicEvaluation, {"every_steps": every_steps})
        self.every_steps, self.splits, self.at_end = every_steps, [SplitName(split).value for split in splits], at_end

    def on_train_steps_end(self, trainer: Trainer, state: TrainState, step: int) -> None:
        final = step == trainer.config.max_steps
        if (is_due(step, self.every_steps) and not final) or (final and self.at_end):
            for split in self.splits:
                trainer.evaluate(state, split)
