"""Checkpoints every so many steps, at the end, and of the best evaluated state."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Optional

from jaxclf.callbacks.base import Callback, improves, is_due
from jaxclf.checkpointing import Retention
from jaxclf.config.choices import MetricMode, MetricName, SplitName
from jaxclf.config.rules import PositiveInt, check_arguments
from jaxclf.evaluation import EvalResults

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from jaxclf.train_state import TrainState
    from jaxclf.trainer import Trainer


class ModelCheckpoint(Callback):
    """Saves a checkpoint every ``every_steps`` and at the end of training,
    keeping the latest ``max_to_keep``.

    With ``monitor`` (a metric of the ``split`` evaluation, higher is better
    with ``mode=max``) it also saves every evaluated state that is the best so
    far and keeps the best checkpoint beside the latest ones: ``best_step``."""

    order = 1  # last: it saves the state the other callbacks have just updated

    def __init__(
        self,
        every_steps: PositiveInt,
        max_to_keep: PositiveInt = 3,
        monitor: Optional[MetricName] = None,  # Optional[...]: what hydra-zen turns into a checked Enum
        mode: MetricMode = MetricMode.max,
        split: SplitName = SplitName.validation,
    ):
        check_arguments(ModelCheckpoint, {"every_steps": every_steps, "max_to_keep": max_to_keep})
        self.every_steps, self.max_to_keep, self.mode = every_steps, max_to_keep, MetricMode(mode)
        self.monitor = None if monitor is None else MetricName(monitor).value
        self.split = SplitName(split).value
        self.best_step: int | None = None
        self.best_value: float | None = None
        self._evaluated: tuple[int, float] | None = None  # the latest monitored evaluation

    def retention(self) -> Retention:
        return Retention(latest=self.max_to_keep, best=1 if self.monitor else 0, mode=self.mode.value)

    def best_checkpoint(self) -> tuple[int, str] | None:
        if self.best_step is None or self.best_value is None:
            return None
        return self.best_step, f"{self.split} {self.monitor} {self.best_value:.4f}"

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
