"""Evaluation: a split in, a flat mapping of metrics out.

Whatever the training loss, an evaluation judges the predicted distribution
against the hard label, over every example of the split exactly once:
``loss`` and ``nll`` (the cross-entropy), ``accuracy``, ``top5_accuracy``
(more than 5 classes), ``ece`` (expected calibration error) and ``brier``,
plus ``num_examples``. Which splits are evaluated after training is the
``evaluation`` config; during training, the ``evaluation`` callback's.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np

from jaxclf.config.choices import SplitName
from jaxclf.data.loader import eval_batches
from jaxclf.data.splits import Split
from jaxclf.hardware import Hardware
from jaxclf.metrics import EvalMetrics
from jaxclf.train_state import Classifier, TrainState


class EvalResults(Mapping[str, float]):
    """One split's metrics by name, the calibration bins behind its ECE
    (``calibration``: per-bin ``count``, ``confidence`` and ``correct``, for a
    reliability diagram) and its ``confusion`` matrix (``[true, predicted]`` counts)."""

    def __init__(
        self, metrics: Mapping[str, float], calibration: Mapping[str, np.ndarray], confusion: np.ndarray | None = None
    ):
        self._metrics, self.calibration = dict(metrics), dict(calibration)
        self.confusion = np.zeros((0, 0)) if confusion is None else confusion

    def __getitem__(self, name: str) -> float:
        return self._metrics[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._metrics)

    def __len__(self) -> int:
        return len(self._metrics)

    def __repr__(self) -> str:
        return f"EvalResults({self._metrics})"


class Evaluator:
    """Scores a state on a split in padded batches of ``batch_size``; top-5
    accuracy only with more than ``top5_min_classes`` classes."""

    def __init__(
        self, classifier: Classifier, hardware: Hardware, batch_size: int, num_classes: int, top5_min_classes: int = 10
    ):
        self.hardware, self.batch_size, self.num_classes = hardware, batch_size, num_classes
        self.top5 = num_classes > top5_min_classes
        self._step = jax.jit(classifier.eval_step, donate_argnums=(1,))

    def __call__(self, state: TrainState, split: Split) -> EvalResults:
        metrics = jax.device_put(EvalMetrics.for_classes(self.num_classes), self.hardware.replicated)
        for batch in eval_batches(split, self.batch_size, self.hardware):
            metrics = self._step(state, metrics, batch)
        computed = metrics.compute()
        results: dict[str, Any] = {name: float(value) for name, value in computed.items() if name != "confusion"}
        if not self.top5:
            del results["top5_accuracy"]
        results["num_examples"] = metrics.num_examples
        return EvalResults(results, metrics.ece.as_numpy(), np.asarray(computed["confusion"]))


def train_minus_validation_accuracy(results: Mapping[str, Mapping[str, float]]) -> float | None:
    """The overfitting gap, when both the train and validation splits were evaluated."""
    if SplitName.train.value in results and SplitName.validation.value in results:
        return results[SplitName.train.value]["accuracy"] - results[SplitName.validation.value]["accuracy"]
    return None
