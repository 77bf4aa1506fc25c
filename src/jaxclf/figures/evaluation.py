"""The images of an evaluation: its reliability diagram and confusion matrix."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from jaxclf.evaluation import EvalResults

if TYPE_CHECKING:
    from jaxclf.figures.calibration import ReliabilityDiagram
    from jaxclf.figures.confusion import ConfusionImage


class EvaluationFigures:
    """Renders evaluations as images, tagged ``<name>/reliability_diagram``
    and ``<name>/confusion_matrix``. Each figure's frame is drawn on first
    use and kept for the next evaluation of the same size."""

    def __init__(self) -> None:
        self._reliability: dict[int, ReliabilityDiagram] = {}
        self._confusion: dict[int, ConfusionImage] = {}

    def __call__(self, name: str, step: int, results: EvalResults) -> dict[str, np.ndarray]:
        title = f"{name}, step {step}: ECE {results['ece']:.4f}"
        bins = results.calibration
        images = {f"{name}/reliability_diagram": self._reliability_of(len(bins["count"]))(**bins, title=title)}
        if len(results.confusion):
            title = f"{name}, step {step}: accuracy {results['accuracy']:.4f}"
            images[f"{name}/confusion_matrix"] = self._confusion_of(len(results.confusion))(results.confusion, title)
        return images

    def _reliability_of(self, num_bins: int) -> ReliabilityDiagram:
        from jaxclf.figures.calibration import ReliabilityDiagram  # matplotlib: imported where the figures are drawn

        if num_bins not in self._reliability:
            self._reliability[num_bins] = ReliabilityDiagram(num_bins)
        return self._reliability[num_bins]

    def _confusion_of(self, num_classes: int) -> ConfusionImage:
        from jaxclf.figures.confusion import ConfusionImage

        if num_classes not in self._confusion:
            self._confusion[num_classes] = ConfusionImage(num_classes)
        return self._confusion[num_classes]
