"""Temperature scaling after the final evaluation (Guo et al. 2017): one
softmax temperature fitted on the validation split, and the test scores of
``softmax(z / T)``, logged as ``test_calibrated/*``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from jaxclf import temperature
from jaxclf.callbacks.base import Callback
from jaxclf.config.choices import SplitName
from jaxclf.evaluation import EvalResults

if TYPE_CHECKING:
    from jaxclf.train_state import TrainState
    from jaxclf.trainer import Trainer

logger = logging.getLogger(__name__)
PREFIX = "test_calibrated/"


class TemperatureScaling(Callback):
    """Fits the temperature when a test covers both the validation and the
    test split; ``trainer.logged_metrics`` then holds ``test_calibrated/temperature``
    and the calibrated test scores (``test_calibrated/ece``, ...)."""

    def on_test_end(self, trainer: Trainer, state: TrainState, results: Mapping[str, EvalResults]) -> None:
        validation, test = SplitName.validation.value, SplitName.test.value
        if not {validation, test} <= set(results):
            return
        fitted = temperature.fit_temperature(*trainer.predict(state, validation))
        log_probs, labels = trainer.predict(state, test)
        scores = temperature.scores(temperature.calibrated(log_probs, fitted), labels)
        logger.info(
            "Temperature scaling: T = %.3f%s; test ECE %.4f",
            fitted,
            " (no validation mistake to fit it on)" if fitted == 1.0 else "",
            scores["ece"],
        )
        metrics = {f"{PREFIX}{name}": value for name, value in scores.items()}
        trainer.log_metrics(int(state.step), {**metrics, f"{PREFIX}temperature": fitted})


def calibrated_results(logged_metrics: Mapping[str, float]) -> dict[str, object]:
    """``{"temperature": T, "test_calibrated": {...}}`` from what ``TemperatureScaling``
    logged, as ``summary.json`` holds it (empty if it fitted nothing)."""
    scores = {name[len(PREFIX) :]: value for name, value in logged_metrics.items() if name.startswith(PREFIX)}
    if not scores:
        return {}
    return {"temperature": scores.pop("temperature"), "test_calibrated": scores}
