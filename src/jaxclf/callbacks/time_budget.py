"""``trainer.max_time``: stop training after a wall-time budget, as Lightning's ``Timer`` does."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxclf.callbacks.base import Callback
from jaxclf.config.schema import parse_duration

if TYPE_CHECKING:
    from jaxclf.train_state import TrainState
    from jaxclf.trainer import Trainer

logger = logging.getLogger(__name__)


class TimeBudget(Callback):
    """Ends ``fit`` once ``max_time`` has passed since it started: a checkpoint
    of the step reached is saved first, then the run is tested as it is.
    Launching the same command again continues it with a new budget.

    With several processes, process 0's clock decides, told to the others
    after every call (a small collective)."""

    def __init__(self, max_time: str | float):
        self.max_time = max_time
        self.seconds = parse_duration(max_time)
        self._deadline = float("inf")

    def on_fit_start(self, trainer: Trainer, state: TrainState) -> None:
        self._deadline = time.monotonic() + self.seconds

    def on_train_steps_end(self, trainer: Trainer, state: TrainState, step: int) -> None:
        if step >= trainer.config.max_steps or trainer.should_stop or not self._out_of_time():
            return
        logger.info(
            "trainer.max_time=%s reached at step %d of %d: saving a checkpoint, then testing "
            "(run the same command again to continue)",
            self.max_time,
            step,
            trainer.config.max_steps,
        )
        trainer.save_checkpoint(step, state)  # before should_stop: a resumed run goes on training
        trainer.should_stop = True

    def _out_of_time(self) -> bool:
        out = time.monotonic() >= self._deadline
        if jax.process_count() == 1:
            return out
        return bool(multihost_utils.broadcast_one_to_all(np.bool_(out)))
