"""Reliability diagrams: how often a prediction made with confidence c is right.

A calibrated classifier is right 80% of the time when it says 0.8; the bars
of its diagram sit on the diagonal. The gap between bars and diagonal,
weighted by how many predictions fall in each bin, is the expected
calibration error (``jaxclf.metrics.CalibrationBins``).
"""

from __future__ import annotations

import numpy as np


def reliability_diagram(count: np.ndarray, confidence: np.ndarray, correct: np.ndarray, title: str = "") -> np.ndarray:
    """Renders per-bin accuracy against confidence as an RGB ``uint8`` image ``[H, W, 3]``.

    The arguments are ``CalibrationBins``' per-bin sums; the title might carry
    the ECE that ``CalibrationBins.compute()`` gives."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    num_bins = len(count)
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    occupied = count > 0
    accuracy = np.divide(correct, count, out=np.zeros_like(correct), where=occupied)
    mean_confidence = np.divide(confidence, count, out=np.zeros_like(confidence), where=occupied)

    figure = Figure(figsize=(4, 4), dpi=80)
    canvas = FigureCanvasAgg(figure)  # renders off-screen; no global backend change
    axes = figure.add_subplot()
    axes.bar(centres, accuracy, width=1.0 / num_bins, edgecolor="black", color="tab:blue", label="accuracy")
    axes.bar(
        centres,
        mean_confidence - accuracy,
        bottom=accuracy,
        width=1.0 / num_bins,
        color="tab:red",
        alpha=0.3,
        label="gap to confidence",
    )
    axes.plot([0, 1], [0, 1], "k--", linewidth=1)
    axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence", ylabel="accuracy")
    axes.set_title(title)
    axes.legend(loc="upper left")
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
