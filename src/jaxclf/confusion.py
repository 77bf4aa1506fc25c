"""The confusion matrix: which classes the model takes for which, and each class's accuracy."""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics

LABELLED_CLASSES = 20  # up to this many classes, the image names every class and cell


@flax.struct.dataclass
class ConfusionMatrix(metrics.Metric):
    """``counts[true, predicted]`` over the (unmasked) examples. ``empty()``
    has no classes yet; ``zeros(num_classes)`` is the start of an evaluation."""

    counts: jnp.ndarray

    @classmethod
    def empty(cls) -> ConfusionMatrix:
        return cls(counts=jnp.zeros((0, 0), jnp.float32))

    @classmethod
    def zeros(cls, num_classes: int) -> ConfusionMatrix:
        return cls(counts=jnp.zeros((num_classes, num_classes), jnp.float32))

    @classmethod
    def from_model_output(
        cls, *, probs: jnp.ndarray, labels: jnp.ndarray, mask: jnp.ndarray | None = None, **_
    ) -> ConfusionMatrix:
        num_classes = probs.shape[-1]
        true = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
        if mask is not None:
            true = true * mask[:, None].astype(jnp.float32)
        predicted = jax.nn.one_hot(jnp.argmax(probs, axis=-1), num_classes, dtype=jnp.float32)
        return cls(counts=true.T @ predicted)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        if not self.counts.size:  # empty(): the first batch says how many classes
            return other
        return type(self)(counts=self.counts + other.counts)

    def compute(self) -> jnp.ndarray:
        return self.counts


def per_class_accuracy(counts: np.ndarray) -> np.ndarray:
    """Recall of each class: the fraction of its examples predicted as it (NaN for a class with none)."""
    totals = counts.sum(axis=1)
    return np.divide(np.diag(counts), totals, out=np.full(len(counts), np.nan), where=totals > 0)


def confusion_image(counts: np.ndarray, title: str = "") -> np.ndarray:
    """The matrix as an RGB ``uint8`` image: rows are true classes, columns
    predictions, each row normalised (so the diagonal is per-class accuracy);
    with up to ``LABELLED_CLASSES`` classes every cell shows its count."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    num_classes = len(counts)
    totals = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, totals, out=np.zeros_like(counts, dtype=float), where=totals > 0)
    figure = Figure(figsize=(5, 4.5), dpi=80)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    shown = axes.imshow(rates, cmap="Blues", vmin=0, vmax=1, interpolation="nearest")
    figure.colorbar(shown, ax=axes, label="fraction of the true class")
    if num_classes <= LABELLED_CLASSES:
        axes.set(xticks=range(num_classes), yticks=range(num_classes))
        for (true, predicted), n in np.ndenumerate(counts):
            if n:
                colour = "white" if rates[true, predicted] > 0.5 else "black"
                axes.text(predicted, true, f"{int(n)}", ha="center", va="center", fontsize=7, color=colour)
    axes.set(xlabel="predicted class", ylabel="true class")
    axes.set_title(title, fontsize=10)
    # Fixed margins: tight_layout took a third of the time.
    figure.subplots_adjust(left=0.11, right=0.99, bottom=0.11, top=0.93)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
