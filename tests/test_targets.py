"""Labels -> probability vectors: one-hot, smoothing, mixup, cutmix; objectives, distillation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxclf import losses, objectives
from jaxclf.objectives import Distillation, Objective, Teacher


def _batch(seed: int = 0, batch: int = 6, classes: int = 5):
    rng = np.random.default_rng(seed)
    images = jnp.asarray(rng.normal(size=(batch, 8, 8, 3)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, classes, size=batch), jnp.int32)
    return images, labels


@settings(deadline=None, max_examples=20)
@given(st.sampled_from([2, 3, 10, 50]), st.floats(0.0, 1.0))  # a few class counts: each shape compiles anew
def test_smoothed_targets_are_distributions(classes, epsilon):
    labels = jnp.arange(7) % classes
    smoothed = objectives.dense_targets(labels, classes, epsilon, jnp.float32(1.0))
    np.testing.assert_allclose(smoothed.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(smoothed[0, 0], 1 - epsilon + epsilon / classes, rtol=1e-5)
    assert float(smoothed.min()) >= 0


def test_targets_without_smoothing_or_mixing_are_one_hot():
    labels = jnp.array([0, 3, 2])
    np.testing.assert_array_equal(objectives.dense_targets(labels, 4, 0.0, jnp.float32(1.0)), np.eye(4)[[0, 3, 2]])


def test_a_single_output_targets_the_probability_of_class_one():
    labels = jnp.array([0, 1, 1])
    np.testing.assert_allclose(
        objectives.dense_targets(labels, 1, 0.2, jnp.float32(1.0)), [[0.1], [0.9], [0.9]], rtol=1e-6
    )


def test_mixup_with_lambda_one_is_the_identity():
    images, labels = _batch()
    one_hot = jax.nn.one_hot(labels, 5)
    np.testing.assert_array_equal(objectives.mixup(images, jnp.float32(1.0)), images)
    np.testing.assert_array_equal(objectives.mix_targets(one_hot, jnp.float32(1.0)), one_hot)


def test_mixup_mixes_images_and_targets_with_the_same_weight():
    images, labels = _batch()
    lam = jnp.float32(0.3)
    mixed = objectives.mixup(images, lam)
    np.testing.assert_allclose(mixed[0], 0.3 * images[0] + 0.7 * images[-1], rtol=1e-6)
    mixed_targets = objectives.mix_targets(jax.nn.one_hot(labels, 5), lam)
    np.testing.assert_allclose(mixed_targets.sum(-1), 1.0, rtol=1e-6)
    expected = 0.3 * np.eye(5)[labels[0]] + 0.7 * np.eye(5)[labels[-1]]
    np.testing.assert_allclose(mixed_targets[0], expected, rtol=1e-6)


def test_mixing_weight_follows_beta():
    draws = jax.vmap(lambda key: objectives.sample_mixing_weight(key, 0.4))(
        jax.random.split(jax.random.PRNGKey(0), 4000)
    )
    assert float(draws.min()) >= 0 and float(draws.max()) <= 1
    np.testing.assert_allclose(draws.mean(), 0.5, atol=0.03)  # Beta(a, a) has mean 1/2
    np.testing.assert_allclose(draws.var(), 1 / (4 * (2 * 0.4 + 1)), rtol=0.1)  # and variance 1/(4(2a+1))
    assert float(objectives.sample_mixing_weight(jax.random.PRNGKey(0), 0.0)) == 1.0


@pytest.mark.parametrize("lam", [0.0, 0.25, 0.6, 1.0])
def test_cutmix_weight_is_the_fraction_of_pixels_kept(lam):
    images, _ = _batch()
    mixed, kept = objectives.cutmix(jax.random.PRNGKey(3), images, jnp.float32(lam))
    from_self = np.all(np.asarray(mixed) == np.asarray(images), axis=-1)[0]  # [H, W]
    np.testing.assert_allclose(kept, from_self.mean(), atol=1e-6)
    if lam == 1.0:
        np.testing.assert_array_equal(mixed, images)
    from_partner = np.all(np.asarray(mixed)[0] == np.asarray(images)[-1], axis=-1)
    assert np.all(from_self | from_partner)


def test_mixing_is_jittable_and_seeded_by_the_rng():
    images, labels = _batch()
    objective = Objective(mixup_alpha=0.5, cutmix_alpha=1.0)
    prepare = jax.jit(objective.prepare)
    a = prepare(jax.random.PRNGKey(1), images, labels)
    b = prepare(jax.random.PRNGKey(1), images, labels)
    c = prepare(jax.random.PRNGKey(2), images, labels)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(a[0], c[0])


def test_distillation_mixes_the_teachers_softened_distribution_with_the_targets():
    """alpha T^2 KL(softmax(t / T) || softmax(s / T)) + (1 - alpha) CE(smoothed labels), in float64 NumPy."""
    rng = np.random.default_rng(7)
    images, labels = _batch(classes=5)
    student = rng.normal(scale=3.0, size=(6, 5)).astype(np.float32)
    teacher_logits = rng.normal(scale=3.0, size=(6, 5)).astype(np.float32)
    teacher = Teacher(
        apply_fn=lambda variables, x, train: variables["logits"], variables={"logits": jnp.asarray(teacher_logits)}
    )
    objective = Distillation(teacher=teacher, temperature=2.0, alpha=0.7, label_smoothing=0.1)
    _, context = objective.prepare(jax.random.PRNGKey(0), images, labels)

    def log_softmax(z):
        z = np.asarray(z, np.float64) - np.max(z, axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(-1, keepdims=True))

    soft_teacher = np.exp(log_softmax(teacher_logits / 2.0))
    kl = (soft_teacher * (log_softmax(teacher_logits / 2.0) - log_softmax(student / 2.0))).sum(-1)
    smoothed = 0.9 * np.eye(5)[np.asarray(labels)] + 0.1 / 5
    cross_entropy = -(smoothed * log_softmax(student)).sum(-1)
    expected = 0.7 * 4.0 * kl + 0.3 * cross_entropy
    np.testing.assert_allclose(objective(jnp.asarray(student), context), expected, rtol=1e-5)


def test_objectives_with_plain_targets_equal_the_plain_losses():
    rng = np.random.default_rng(0)
    images, labels = _batch(classes=5)
    logits = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
    ce = Objective()
    _, context = ce.prepare(jax.random.PRNGKey(0), images, labels)
    nll = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    np.testing.assert_allclose(ce(logits, context), nll, rtol=1e-6)
    smoothed = Objective(label_smoothing=0.2)
    expected = optax.softmax_cross_entropy(logits, optax.smooth_labels(jax.nn.one_hot(labels, 5), 0.2))
    np.testing.assert_allclose(smoothed(logits, context), expected, rtol=1e-6)
    binary_labels = labels % 2
    sigmoid = Objective(loss_fn=losses.sigmoid_cross_entropy)
    _, binary_context = sigmoid.prepare(jax.random.PRNGKey(0), images, binary_labels)
    h = logits[:, :1]
    two_classes = optax.softmax_cross_entropy_with_integer_labels(losses.two_class_logits(h), binary_labels)
    np.testing.assert_allclose(sigmoid(h, binary_context), two_classes, rtol=1e-5)


def test_softmax_objective_refuses_a_single_logit():
    images, labels = _batch()
    objective = Objective()
    _, context = objective.prepare(jax.random.PRNGKey(0), images, labels)
    with pytest.raises(ValueError, match="loss=bce"):
        objective(jnp.zeros((6, 1)), context)
