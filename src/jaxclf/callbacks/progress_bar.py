"""The console progress bar."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import jax

from jaxclf.callbacks.base import Callback
from jaxclf.evaluation import EvalResults

if TYPE_CHECKING:
    from jaxclf.train_state import TrainState
    from jaxclf.trainer import Trainer


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
