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

    figure = Figure(figsize=(4.5, 4.5), dpi=80)
    canvas = FigureCanvasAgg(figure)  # renders off-screen; no global backend change
    axes = figure.add_subplot()
    width = 1.0 / num_bins
    axes.bar(centres, accuracy, width=width, edgecolor="black", color="tab:blue", alpha=0.7, label="accuracy in bin")
    axes.vlines(
        centres[occupied], accuracy[occupied], mean_confidence[occupied], color="tab:red", linewidth=2,
        label="gap to confidence (ECE: their mean, by count)",
    )  # fmt: skip
    axes.scatter(
        centres[occupied], mean_confidence[occupied], marker="D", s=14, color="tab:orange", zorder=3,
        label="mean confidence in bin",
    )  # fmt: skip
    for centre, height, n in zip(centres[occupied], accuracy[occupied], count[occupied], strict=True):
        axes.annotate(f"{int(n)}", (centre, height), xytext=(0, 2), textcoords="offset points", ha="center", fontsize=6)
    axes.plot([0, 1], [0, 1], "k--", linewidth=1, label="calibrated")
    axes.set(xlim=(0, 1), ylim=(0, 1.08), xlabel="confidence (numbers: predictions in bin)", ylabel="accuracy")
    axes.set_title(title, fontsize=10)
    axes.legend(loc="upper left", fontsize=7)
    # Fixed margins: tight_layout took a third of the time.
    figure.subplots_adjust(left=0.14, right=0.96, bottom=0.11, top=0.93)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
