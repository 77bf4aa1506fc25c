"""Evaluation metrics against NumPy: ECE (15 equal-width bins), Brier, top-5, masking."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxclf.metrics import NUM_CALIBRATION_BINS, CalibrationBins, ConfusionMatrix, EvalMetrics, per_class_accuracy
from jaxclf.train_state import create_train_state, eval_step


def _np_ece(probs: np.ndarray, labels: np.ndarray, num_bins: int = 15) -> float:
    """Guo et al.'s ECE, written independently: bins ((b-1)/M, b/M]."""
    confidence = probs.max(-1)
    correct = probs.argmax(-1) == labels
    ece = 0.0
    for b in range(num_bins):
        lower, upper = b / num_bins, (b + 1) / num_bins
        in_bin = (confidence > lower) & (confidence <= upper) if b else (confidence <= upper)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return ece


def _predictor(num_examples: int, num_classes: int, accuracy_of, seed: int = 0):
    """Predicts class 0 with confidence c ~ U(1/K, 1); the label is 0 with probability accuracy_of(c)."""
    rng = np.random.default_rng(seed)
    confidence = rng.uniform(1.0 / num_classes + 0.01, 1.0, size=num_examples)
    probs = np.repeat(((1 - confidence) / (num_classes - 1))[:, None], num_classes, axis=1)
    probs[:, 0] = confidence
    right = rng.uniform(size=num_examples) < accuracy_of(confidence)
    labels = np.where(right, 0, rng.integers(1, num_classes, size=num_examples))
    return probs.astype(np.float32), labels


def _ece(probs, labels, mask=None) -> float:
    return float(
        CalibrationBins.from_model_output(probs=jnp.asarray(probs), labels=jnp.asarray(labels), mask=mask).compute()
    )


def test_calibrated_predictor_has_ece_near_zero():
    probs, labels = _predictor(200_000, 10, accuracy_of=lambda c: c)
    assert _ece(probs, labels) < 0.005
    np.testing.assert_allclose(_ece(probs, labels), _np_ece(probs, labels), atol=1e-5)


def test_over_confident_predictor_matches_the_closed_form():
    """Says 0.9, is right 60% of the time: ECE = |0.6 - 0.9| = 0.3."""
    probs = np.full((10_000, 4), 0.1 / 3, np.float32)
    probs[:, 2] = 0.9
    labels = np.where(np.arange(10_000) < 6_000, 2, 0)
    np.testing.assert_allclose(_ece(probs, labels), 0.3, atol=1e-5)


def test_ece_matches_numpy_on_an_arbitrary_predictor_and_merges_across_batches():
    probs, labels = _predictor(5_000, 7, accuracy_of=lambda c: c**2, seed=3)
    expected = _np_ece(probs, labels)
    assert expected > 0.05  # c^2 < c: over-confident everywhere
    merged = CalibrationBins.empty()
    for chunk in np.array_split(np.arange(5_000), 7):
        merged = merged.merge(
            CalibrationBins.from_model_output(probs=jnp.asarray(probs[chunk]), labels=jnp.asarray(labels[chunk]))
        )
    np.testing.assert_allclose(float(merged.compute()), expected, atol=1e-5)
    assert int(merged.count.sum()) == 5_000 and merged.count.shape == (NUM_CALIBRATION_BINS,)


def test_masked_examples_do_not_count():
    probs, labels = _predictor(1_000, 5, accuracy_of=lambda c: c, seed=4)
    mask = np.arange(1_000) < 600
    np.testing.assert_allclose(_ece(probs, labels, jnp.asarray(mask)), _np_ece(probs[:600], labels[:600]), atol=1e-5)


def test_eval_step_metrics_match_numpy():
    from jaxclf.models.mlp import MLP

    model = MLP(num_classes=8, hidden_sizes=(16,))
    state = create_train_state(model, optax.sgd(0.1), (4, 4, 1), jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    images = jnp.asarray(rng.normal(scale=3.0, size=(32, 4, 4, 1)), jnp.float32)
    labels = rng.integers(0, 8, size=32)
    mask = np.arange(32) < 27
    metrics = eval_step(
        state, EvalMetrics.empty(), {"image": images, "label": jnp.asarray(labels), "mask": jnp.asarray(mask)}
    )
    results = {k: float(v) for k, v in metrics.compute().items() if k != "confusion"}

    logits = np.asarray(state.apply_fn({"params": state.params}, images), np.float64)[mask]
    labels = labels[mask]
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    probs = np.exp(log_probs)
    np.testing.assert_allclose(results["nll"], -log_probs[np.arange(27), labels].mean(), rtol=1e-5)
    assert results["loss"] == results["nll"]
    np.testing.assert_allclose(results["accuracy"], (probs.argmax(-1) == labels).mean())
    top5 = np.argsort(-logits, axis=-1)[:, :5]
    np.testing.assert_allclose(results["top5_accuracy"], (top5 == labels[:, None]).any(-1).mean())
    np.testing.assert_allclose(results["brier"], ((probs - np.eye(8)[labels]) ** 2).sum(-1).mean(), rtol=1e-5)
    np.testing.assert_allclose(results["ece"], _np_ece(probs, labels), atol=1e-5)
    assert metrics.num_examples == 27


def test_single_logit_heads_are_evaluated_as_two_classes():
    from jaxclf.models.mlp import Linear

    state = create_train_state(Linear(num_classes=1), optax.sgd(0.1), (2, 2, 1), jax.random.PRNGKey(1))
    images = jnp.asarray(np.random.default_rng(1).normal(size=(16, 2, 2, 1)), jnp.float32)
    labels = np.arange(16) % 2
    metrics = eval_step(
        state, EvalMetrics.empty(), {"image": images, "label": jnp.asarray(labels), "mask": jnp.ones(16, bool)}
    )
    h = np.asarray(state.apply_fn({"params": state.params}, images), np.float64)[:, 0]
    p_odd = 1 / (1 + np.exp(-h))
    nll = -np.mean(np.where(labels == 1, np.log(p_odd), np.log(1 - p_odd)))
    np.testing.assert_allclose(float(metrics.compute()["nll"]), nll, rtol=1e-5)
    np.testing.assert_allclose(float(metrics.compute()["accuracy"]), np.mean((p_odd > 0.5) == labels))


def test_the_confusion_matrix_matches_scikit_learn_and_honours_the_mask():
    from sklearn.metrics import confusion_matrix, recall_score

    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(6), size=200).astype(np.float32)
    labels = rng.integers(0, 6, size=200)
    mask = rng.random(200) < 0.8
    halves = [
        ConfusionMatrix.from_model_output(probs=jnp.asarray(probs[part]), labels=jnp.asarray(labels[part]),
                                          mask=jnp.asarray(mask[part]))
        for part in (slice(0, 120), slice(120, 200))
    ]  # fmt: skip
    counts = np.asarray(ConfusionMatrix.zeros(6).merge(halves[0]).merge(halves[1]).compute())
    expected = confusion_matrix(labels[mask], probs[mask].argmax(-1), labels=range(6))
    np.testing.assert_array_equal(counts, expected)
    recall = recall_score(labels[mask], probs[mask].argmax(-1), labels=range(6), average=None)
    np.testing.assert_allclose(per_class_accuracy(counts), recall)
