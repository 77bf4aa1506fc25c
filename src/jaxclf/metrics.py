"""CLU metric collections for training and evaluation.

Training metrics are merged inside the jitted step and read out at each
logging period. Evaluation metrics honour the ``mask`` of padded batches, so
every example of a split counts exactly once; they judge the predicted
distribution, whatever the training loss: hard-label NLL, accuracy, top-5
accuracy, expected calibration error and Brier score.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics

NUM_CALIBRATION_BINS = 15
LABELLED_CLASSES = 20  # up to this many classes, the confusion image names every class and cell


@flax.struct.dataclass
class ConfusionMatrix(metrics.Metric):
    """``counts[true, predicted]`` over the (unmasked) examples. ``empty()``
    has no classes yet; ``zeros(num_classes)`` is the start of an evaluation."""

    counts: jnp.ndarray

    @classmethod
    def empty(cls) -> "ConfusionMatrix":
        return cls(counts=jnp.zeros((0, 0), jnp.float32))

    @classmethod
    def zeros(cls, num_classes: int) -> "ConfusionMatrix":
        return cls(counts=jnp.zeros((num_classes, num_classes), jnp.float32))

    @classmethod
    def from_model_output(
        cls, *, probs: jnp.ndarray, labels: jnp.ndarray, mask: jnp.ndarray | None = None, **_
    ) -> "ConfusionMatrix":
        num_classes = probs.shape[-1]
        true = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
        if mask is not None:
            true = true * mask[:, None].astype(jnp.float32)
        predicted = jax.nn.one_hot(jnp.argmax(probs, axis=-1), num_classes, dtype=jnp.float32)
        return cls(counts=true.T @ predicted)

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if not self.counts.size:  # empty(): the first batch says how many classes
            return other
        return type(self)(counts=self.counts + other.counts)

    def compute(self) -> jnp.ndarray:
        return self.counts


def per_class_accuracy(counts: np.ndarray) -> np.ndarray:
    """Recall of each class: the fraction of its examples predicted as it (NaN for a class with none)."""
    totals = counts.sum(axis=1)
    return np.divide(np.diag(counts), totals, out=np.full(len(counts), np.nan), where=totals > 0)


@flax.struct.dataclass
class CalibrationBins(metrics.Metric):
    """Per-bin example counts, summed confidences and summed correctness over
    ``NUM_CALIBRATION_BINS`` equal-width confidence bins ``((b-1)/M, b/M]``.

    ``compute()`` is the expected calibration error (Guo et al. 2017):
    ``sum_b (n_b / N) |accuracy_b - confidence_b|``."""

    count: jnp.ndarray
    confidence: jnp.ndarray
    correct: jnp.ndarray

    @classmethod
    def empty(cls) -> "CalibrationBins":
        # Three distinct buffers: the eval step donates the metrics.
        return cls(*(jnp.zeros(NUM_CALIBRATION_BINS, jnp.float32) for _ in range(3)))

    @classmethod
    def from_model_output(
        cls, *, probs: jnp.ndarray, labels: jnp.ndarray, mask: jnp.ndarray | None = None, **_
    ) -> "CalibrationBins":
        confidence = jnp.max(probs, axis=-1)
        correct = (jnp.argmax(probs, axis=-1) == labels).astype(jnp.float32)
        bins = jnp.clip(jnp.ceil(confidence * NUM_CALIBRATION_BINS).astype(jnp.int32) - 1, 0, NUM_CALIBRATION_BINS - 1)
        weights = jax.nn.one_hot(bins, NUM_CALIBRATION_BINS, dtype=jnp.float32)
        if mask is not None:
            weights = weights * mask[:, None].astype(jnp.float32)
        return cls(
            count=weights.sum(axis=0),
            confidence=(weights * confidence[:, None]).sum(axis=0),
            correct=(weights * correct[:, None]).sum(axis=0),
        )

    def merge(self, other: "CalibrationBins") -> "CalibrationBins":
        return type(self)(
            count=self.count + other.count,
            confidence=self.confidence + other.confidence,
            correct=self.correct + other.correct,
        )

    def compute(self) -> jnp.ndarray:
        return jnp.sum(jnp.abs(self.correct - self.confidence)) / jnp.maximum(jnp.sum(self.count), 1.0)

    def as_numpy(self) -> dict[str, np.ndarray]:
        """The bins on the host, for a reliability diagram."""
        return {
            "count": np.asarray(self.count),
            "confidence": np.asarray(self.confidence),
            "correct": np.asarray(self.correct),
        }


def _of_applied_steps(name: str):
    """An output's values over the steps whose update was ``applied``."""
    return lambda applied, **outputs: {"values": outputs[name], "mask": applied}


@flax.struct.dataclass
class TrainMetrics(metrics.Collection):
    loss: metrics.Average.from_fun(_of_applied_steps("loss"))  # mean of the steps' batch losses
    accuracy: metrics.Average.from_fun(_of_applied_steps("correct"))  # against the un-mixed labels
    grad_norm: metrics.Average.from_fun(_of_applied_steps("grad_norm"))  # global norms, mean over the steps
    param_norm: metrics.Average.from_fun(_of_applied_steps("param_norm"))
    update_norm: metrics.Average.from_fun(_of_applied_steps("update_norm"))
    learning_rate: metrics.LastValue.from_output("learning_rate")  # of the latest step
    skipped_steps: metrics.LastValue.from_output("skipped_steps")  # updates skipped so far (non-finite values)


@flax.struct.dataclass
class EvalMetrics(metrics.Collection):
    loss: metrics.Average.from_output("nll")  # hard-label cross-entropy, named as in training
    nll: metrics.Average.from_output("nll")  # the same value, under its statistical name
    accuracy: metrics.Average.from_output("correct")
    top5_accuracy: metrics.Average.from_output("top5_correct")
    ece: CalibrationBins
    brier: metrics.Average.from_output("brier")  # sum_k (p_k - y_k)^2 per example
    confusion: ConfusionMatrix

    @classmethod
    def for_classes(cls, num_classes: int) -> "EvalMetrics":
        """The empty collection of an evaluation over ``num_classes`` classes."""
        return cls.empty().replace(confusion=ConfusionMatrix.zeros(num_classes))

    @property
    def num_examples(self) -> int:
        """How many (unmasked) examples were merged in."""
        return int(self.accuracy.count)
