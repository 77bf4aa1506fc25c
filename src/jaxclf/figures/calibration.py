"""Reliability diagrams: how often a prediction made with confidence c is right.

A calibrated classifier is right 80% of the time when it says 0.8; the bars
of its diagram sit on the diagonal. The gap between bars and diagonal,
weighted by how many predictions fall in each bin, is the expected
calibration error (``jaxclf.metrics.CalibrationBins``).
"""

from __future__ import annotations

import numpy as np

from jaxclf.figures.canvas import BlittedFigure


class ReliabilityDiagram:
    """Renders per-bin accuracy against confidence for ``num_bins`` equal-width
    bins; the axes, legend and labels are drawn once (``BlittedFigure``)."""

    def __init__(self, num_bins: int):
        edges = np.linspace(0.0, 1.0, num_bins + 1)
        self.centres = (edges[:-1] + edges[1:]) / 2
        self.canvas = BlittedFigure((4.5, 5.0))
        self.axes = axes = self.canvas.figure.add_subplot()
        self.bars = axes.bar(self.centres, np.zeros(num_bins), width=1.0 / num_bins, edgecolor="black",
                             color="tab:blue", alpha=0.7, label="accuracy in bin")  # fmt: skip
        self.gaps = axes.vlines([], [], [], color="tab:red", linewidth=2,
                                label="gap to confidence (ECE: their mean, by count)")  # fmt: skip
        self.points = axes.scatter([], [], marker="D", s=14, color="tab:orange", zorder=3,
                                   label="mean confidence in bin")  # fmt: skip
        (self.diagonal,) = axes.plot([0, 1], [0, 1], "k--", linewidth=1, label="calibrated")
        # Above the axes, where no bar can cover it: the legend is drawn once.
        handles = [self.bars, self.points, self.gaps, self.diagonal]
        self.canvas.figure.legend(handles=handles, loc="upper center", ncols=2, fontsize=7, frameon=False)
        axes.set(xlim=(0, 1), ylim=(0, 1.08), xlabel="confidence (numbers: predictions in bin)", ylabel="accuracy")
        self.title = axes.set_title("", fontsize=10)
        # Fixed margins: tight_layout took a third of the time.
        self.canvas.figure.subplots_adjust(left=0.14, right=0.96, bottom=0.1, top=0.84)
        self.changing = [*self.bars, self.gaps, self.points, self.diagonal, self.title, *axes.spines.values()]
        for artist in self.changing:  # after the legend, whose handles copy it
            artist.set_animated(True)
        self.canvas.freeze()

    def __call__(self, count: np.ndarray, confidence: np.ndarray, correct: np.ndarray, title: str = "") -> np.ndarray:
        """An RGB ``uint8`` image ``[H, W, 3]`` of ``CalibrationBins``' per-bin
        sums; the title might carry the ECE that ``CalibrationBins.compute()`` gives."""
        occupied = count > 0
        accuracy = np.divide(correct, count, out=np.zeros_like(correct), where=occupied)
        mean_confidence = np.divide(confidence, count, out=np.zeros_like(confidence), where=occupied)
        for bar, height in zip(self.bars, accuracy, strict=True):
            bar.set_height(height)
        centres = self.centres[occupied]
        bar_tops, confidences = np.c_[centres, accuracy[occupied]], np.c_[centres, mean_confidence[occupied]]
        self.gaps.set_segments(list(np.stack([bar_tops, confidences], axis=1)))
        self.points.set_offsets(confidences)
        self.title.set_text(title)
        counts = [
            self.axes.annotate(f"{int(n)}", (centre, height), xytext=(0, 2), textcoords="offset points", ha="center",
                               fontsize=6, animated=True)
            for centre, height, n in zip(centres, accuracy[occupied], count[occupied], strict=True)
        ]  # fmt: skip
        return self.canvas.render(self.changing, temporary=counts)
