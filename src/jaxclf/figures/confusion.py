"""The confusion matrix as an image (the metric is ``jaxclf.metrics``)."""

from __future__ import annotations

import numpy as np

from jaxclf.figures.canvas import BlittedFigure
from jaxclf.metrics import LABELLED_CLASSES


class ConfusionImage:
    """Renders a ``num_classes``-square confusion matrix: rows are true
    classes, columns predictions, each row normalised (so the diagonal is
    per-class accuracy); with up to ``LABELLED_CLASSES`` classes every cell
    shows its count. The axes and colorbar are drawn once (``BlittedFigure``)."""

    def __init__(self, num_classes: int):
        self.canvas = BlittedFigure((5, 4.5))
        self.axes = axes = self.canvas.figure.add_subplot()
        empty = np.zeros((num_classes, num_classes))
        self.matrix = axes.imshow(empty, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
        self.canvas.figure.colorbar(self.matrix, ax=axes, label="fraction of the true class")
        if num_classes <= LABELLED_CLASSES:
            axes.set(xticks=range(num_classes), yticks=range(num_classes))
        axes.set(xlabel="predicted class", ylabel="true class")
        self.title = axes.set_title("", fontsize=10)
        self.changing = [self.matrix, self.title, *axes.spines.values()]  # the spines frame the matrix
        for artist in self.changing:
            artist.set_animated(True)
        # Fixed margins: tight_layout took a third of the time.
        self.canvas.figure.subplots_adjust(left=0.11, right=0.99, bottom=0.11, top=0.93)
        self.canvas.freeze()

    def __call__(self, counts: np.ndarray, title: str = "") -> np.ndarray:
        """The matrix of ``[true, predicted]`` counts as an RGB ``uint8`` image ``[H, W, 3]``."""
        totals = counts.sum(axis=1, keepdims=True)
        rates = np.divide(counts, totals, out=np.zeros_like(counts, dtype=float), where=totals > 0)
        self.matrix.set_data(rates)
        self.title.set_text(title)
        cells = []
        if len(counts) <= LABELLED_CLASSES:
            cells = [
                self.axes.text(predicted, true, f"{int(n)}", ha="center", va="center", fontsize=7, animated=True,
                               color="white" if rates[true, predicted] > 0.5 else "black")
                for (true, predicted), n in np.ndenumerate(counts) if n
            ]  # fmt: skip
        return self.canvas.render(self.changing, temporary=cells)
