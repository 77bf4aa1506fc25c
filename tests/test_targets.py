"""Labels -> probability vectors: one-hot, smoothing, mixup, cutmix, teacher targets."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxclf import losses, targets
from jaxclf.objectives import SigmoidCrossEntropy, SoftmaxCrossEntropy


def _batch(seed: int = 0, batch: int = 6, classes: int = 5):
    rng = np.random.default_rng(seed)
    images = jnp.asarray(rng.normal(size=(batch, 8, 8, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, classes, size=batch), jnp.int32)
    return images, labels


@settings(deadline=None, max_examples=20)
@given(st.integers(2, 50), st.floats(0.0, 1.0))
def test_smoothed_targets_are_distributions(classes, epsilon):
    labels = jnp.arange(7) % classes
    smoothed = targets.smooth_labels(targets.one_hot(labels, classes), epsilon)
    np.testing.assert_allclose(smoothed.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(smoothed[0, 0], 1 - epsilon + epsilon / classes, rtol=1e-5)
    assert float(smoothed.min()) >= 0


def test_smoothing_with_zero_epsilon_is_the_identity():
    one_hot = targets.one_hot(jnp.array([0, 3, 2]), 4)
    np.testing.assert_array_equal(targets.smooth_labels(one_hot, 0.0), one_hot)


def test_mixup_with_lambda_one_is_the_identity():
    images, labels = _batch()
    one_hot = targets.one_hot(labels, 5)
    np.testing.assert_array_equal(targets.mixup(images, jnp.float32(1.0)), images)
    np.testing.assert_array_equal(targets.mix_targets(one_hot, jnp.float32(1.0)), one_hot)


def test_mixup_mixes_images_and_targets_with_the_same_weight():
    images, labels = _batch()
    lam = jnp.float32(0.3)
    mixed = targets.mixup(images, lam)
    np.testing.assert_allclose(mixed[0], 0.3 * images[0] + 0.7 * images[-1], rtol=1e-6)
    mixed_targets = targets.mix_targets(targets.one_hot(labels, 5), lam)
    np.testing.assert_allclose(mixed_targets.sum(-1), 1.0, rtol=1e-6)
    expected = 0.3 * np.eye(5)[labels[0]] + 0.7 * np.eye(5)[labels[-1]]
    np.testing.assert_allclose(mixed_targets[0], expected, rtol=1e-6)


def test_mixing_weight_follows_beta():
    draws = jax.vmap(lambda key: targets.sample_mixing_weight(key, 0.4))(jax.random.split(jax.random.PRNGKey(0), 4000))
    assert float(draws.min()) >= 0 and float(draws.max()) <= 1
    np.testing.assert_allclose(draws.mean(), 0.5, atol=0.03)  # Beta(a, a) has mean 1/2
    np.testing.assert_allclose(draws.var(), 1 / (4 * (2 * 0.4 + 1)), rtol=0.1)  # and variance 1/(4(2a+1))
    assert float(targets.sample_mixing_weight(jax.random.PRNGKey(0), 0.0)) == 1.0


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.6, 1.0])
def test_cutmix_weight_is_the_fraction_of_pixels_kept(lam):
    images, _ = _batch()
    mixed, kept = targets.cutmix(jax.random.PRNGKey(3), images, jnp.float32(lam))
    from_self = np.all(np.asarray(mixed) == np.asarray(images), axis=-1)[0]  # [H, W]
    np.testing.assert_allclose(kept, from_self.mean(), atol=1e-6)
    if lam == 1.0:
        np.testing.assert_array_equal(mixed, images)
    from_partner = np.all(np.asarray(mixed)[0] == np.asarray(images)[-1], axis=-1)
    assert np.all(from_self | from_partner)


def test_mixing_is_jittable_and_seeded_by_the_rng():
    images, labels = _batch()
    objective = SoftmaxCrossEntropy(mixup_alpha=0.5, cutmix_alpha=1.0)
    prepare = jax.jit(objective.prepare)
    a = prepare(jax.random.PRNGKey(1), images, labels)
    b = prepare(jax.random.PRNGKey(1), images, labels)
    c = prepare(jax.random.PRNGKey(2), images, labels)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(a[0], c[0])


def test_teacher_targets_are_the_softened_distribution():
    logits = jnp.array([[2.0, 0.0, -2.0]])
    np.testing.assert_allclose(targets.teacher_targets(logits, 1.0), jax.nn.softmax(logits), rtol=1e-6)
    hot = targets.teacher_targets(logits, 100.0)
    np.testing.assert_allclose(hot, 1 / 3, atol=0.01)  # high T flattens towards uniform


def test_objectives_with_plain_targets_equal_the_plain_losses():
    rng = np.random.default_rng(0)
    images, labels = _batch(classes=5)
    logits = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
    ce = SoftmaxCrossEntropy()
    _, context = ce.prepare(jax.random.PRNGKey(0), images, labels)
    np.testing.assert_allclose(ce(logits, context), losses.cross_entropy(logits, labels), rtol=1e-6)
    smoothed = SoftmaxCrossEntropy(label_smoothing=0.2)
    expected = losses.soft_cross_entropy(logits, targets.smooth_labels(targets.one_hot(labels, 5), 0.2))
    np.testing.assert_allclose(smoothed(logits, context), expected, rtol=1e-6)
    binary_labels = labels % 2
    _, binary_context = SigmoidCrossEntropy().prepare(jax.random.PRNGKey(0), images, binary_labels)
    h = logits[:, :1]
    np.testing.assert_allclose(
        SigmoidCrossEntropy()(h, binary_context), losses.cross_entropy(losses.two_class_logits(h), binary_labels), rtol=1e-5
    )


def test_softmax_objective_refuses_a_single_logit():
    images, labels = _batch()
    objective = SoftmaxCrossEntropy()
    _, context = objective.prepare(jax.random.PRNGKey(0), images, labels)
    with pytest.raises(ValueError, match="loss=bce"):
        objective(jnp.zeros((6, 1)), context)
