"""A ``jax.profiler`` trace of a few training steps, for TensorBoard's Profile tab."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import jax

from jaxclf.callbacks.base import Callback
from jaxclf.config.rules import OffOrPositiveInt, PositiveInt, check_arguments

if TYPE_CHECKING:
    from jaxclf.train_state import TrainState
    from jaxclf.trainer import Trainer

logger = logging.getLogger(__name__)


class Profiler(Callback):
    """Traces the training calls from step ``start_step`` (after the first
    compile) for ``num_steps`` steps into the run directory
    (``plugins/profile/<time>/<host>.xplane.pb``), where ``tensorboard
    --logdir`` finds it: its Profile tab needs ``pip install tensorboard-plugin-profile``."""

    def __init__(self, start_step: OffOrPositiveInt = 10, num_steps: PositiveInt = 10):
        check_arguments(Profiler, {"start_step": start_step, "num_steps": num_steps})
        self.start_step, self.num_steps = start_step, num_steps
        self._stop_at: int | None = None  # while tracing
        self._traced = False

    def on_train_steps_end(self, trainer: Trainer, state: TrainState, step: int) -> None:
        if self._stop_at is not None and step >= self._stop_at:
            self._stop(state)
        elif not self._traced and self._stop_at is None and step >= self.start_step:
            jax.profiler.start_trace(trainer.workdir)
            self._stop_at = step + self.num_steps

    def on_fit_end(self, trainer: Trainer, state: TrainState) -> None:
        self._stop(state)

    def _stop(self, state: TrainState) -> None:
        if self._stop_at is None:
            return
        jax.block_until_ready(state)  # the traced steps have run
        jax.profiler.stop_trace()
        self._stop_at, self._traced = None, True
        logger.info("Profile of the training steps written for TensorBoard's Profile tab")

    def teardown(self, trainer: Trainer) -> None:
        if self._stop_at is not None:  # fit failed while tracing
            jax.profiler.stop_trace()
            self._stop_at = None
