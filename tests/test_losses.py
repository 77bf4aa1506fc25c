"""Cross-entropy against optax and float64 NumPy closed forms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxclf import losses


def _numpy_log_softmax(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def test_log_softmax_and_softmax_match_float64_reference():
    logits = np.random.default_rng(0).normal(scale=5.0, size=(64, 10)).astype(np.float32)
    np.testing.assert_allclose(losses.log_softmax(logits), _numpy_log_softmax(logits), atol=1e-5)
    np.testing.assert_allclose(losses.softmax(logits), np.exp(_numpy_log_softmax(logits)), atol=1e-6)


def test_cross_entropy_matches_optax():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3.0, size=(32, 7)).astype(np.float32)
    labels = rng.integers(0, 7, size=32)
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    np.testing.assert_allclose(losses.cross_entropy(logits, labels), expected, rtol=1e-6, atol=1e-6)


def test_cross_entropy_is_finite_for_huge_logits():
    logits = jnp.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], jnp.float32)
    labels = jnp.array([1, 0])
    values = losses.cross_entropy(logits, labels)
    grads = jax.grad(lambda z: losses.cross_entropy(z, labels).sum())(logits)
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(grads))
    np.testing.assert_allclose(values, [2e4, 2e4 + np.log(2.0)], rtol=1e-6)


@pytest.mark.parametrize("batch_shape", [(), (5,), (2, 3)])
def test_cross_entropy_shapes(batch_shape):
    logits = jnp.zeros((*batch_shape, 4))
    labels = jnp.zeros(batch_shape, jnp.int32)
    values = losses.CrossEntropyLoss()(logits, labels)
    assert values.shape == batch_shape
    np.testing.assert_allclose(values, np.log(4.0), rtol=1e-6)
