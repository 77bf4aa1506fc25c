"""The confusion matrix: which classes the model takes for which, and each class's accuracy."""

from __future__ import annotations

import flax
import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics

LABELLED_CLASSES = 20  # up to this many classes, the confusion image names every class and cell


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
