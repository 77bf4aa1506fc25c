"""Stopping when a monitored metric stops improving."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jaxclf.callbacks.base import Callback, improves
from jaxclf.config.choices import MetricMode, MetricName, SplitName
from jaxclf.config.rules import OffOrPositive, PositiveInt, check_arguments
from jaxclf.evaluation import EvalResults

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from jaxclf.train_state import TrainState
    from jaxclf.trainer import Trainer


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
        patience: PositiveInt = 5,
        min_delta: OffOrPositive = 0.0,
        split: SplitName = SplitName.validation,
    ):
        check_arguments(EarlyStopping, {"patience": patience, "min_delta": min_delta})
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
