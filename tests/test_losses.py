"""The classification math against independent references: optax and float64 NumPy.

jaxclf's losses rest on ``jax.nn.log_softmax`` / ``log_sigmoid``; the first
tests show that those are the stable forms (the max subtracted)."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jaxclf import losses

ADVERSARIAL_LOGITS = np.array(
    [
        [1e4, -1e4, 0.0, 0.0],
        [-1e4, -1e4, -1e4, -1e4],
        [1e4, 1e4, 1e4, -1e4],
        [0.0, 0.0, 0.0, 0.0],
        [3e3, -2e3, 1e4, -5e3],
    ],
    np.float32,
)


def _np_log_softmax(logits) -> np.ndarray:
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _np_log_sigmoid(h) -> np.ndarray:
    h = np.asarray(h, np.float64)
    return np.minimum(h, 0) - np.log1p(np.exp(-np.abs(h)))


finite_logits = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=2, max_side=6),
    elements=st.floats(-1e4, 1e4, width=32),
)


# -- softmax and log-softmax --------------------------------------------------


@settings(deadline=None, max_examples=25)
@given(finite_logits)
def test_log_softmax_matches_float64_reference(logits):
    np.testing.assert_allclose(jax.nn.log_softmax(logits), _np_log_softmax(logits), rtol=1e-5, atol=2e-3)
    probs = np.asarray(jax.nn.softmax(logits))
    np.testing.assert_allclose(probs, np.exp(_np_log_softmax(logits)), atol=1e-6)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)


def test_naive_softmax_overflows_where_the_stable_one_does_not():
    logits = jnp.array([1e4, 0.0, -1e4], jnp.float32)
    naive = jnp.exp(logits) / jnp.sum(jnp.exp(logits))  # exp(1e4) = inf, inf / inf = nan
    assert np.isnan(naive[0])
    np.testing.assert_allclose(jax.nn.softmax(logits), [1.0, 0.0, 0.0])
    naive_nll = -jnp.log(jnp.exp(logits) / jnp.sum(jnp.exp(logits)))[1]
    assert not np.isfinite(naive_nll)
    np.testing.assert_allclose(losses.softmax_cross_entropy(logits, jax.nn.one_hot(1, 3)), 1e4)


# -- cross-entropies ------------------------------------------------------------


@settings(deadline=None, max_examples=25)
@given(finite_logits, st.integers(0, 2**31 - 1))
def test_cross_entropy_with_one_hot_targets_is_the_nll_of_the_label(logits, seed):
    labels = np.random.default_rng(seed).integers(0, logits.shape[-1], size=logits.shape[0])
    hard = losses.softmax_cross_entropy(logits, jax.nn.one_hot(labels, logits.shape[-1]))
    reference = -_np_log_softmax(logits)[np.arange(len(labels)), labels]
    np.testing.assert_allclose(hard, reference, rtol=1e-5, atol=2e-3)
    np.testing.assert_allclose(
        hard, optax.softmax_cross_entropy_with_integer_labels(logits, labels), rtol=1e-5, atol=2e-3
    )


def test_soft_cross_entropy_matches_optax_on_soft_targets():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4.0, size=(16, 9)).astype(np.float32)
    probs = rng.dirichlet(np.ones(9), size=16).astype(np.float32)
    expected = optax.softmax_cross_entropy(logits, probs)
    np.testing.assert_allclose(losses.softmax_cross_entropy(logits, probs), expected, rtol=1e-5)
    closed_form = -(probs * _np_log_softmax(logits)).sum(-1)
    np.testing.assert_allclose(losses.softmax_cross_entropy(logits, probs), closed_form, rtol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_losses_and_gradients_stay_finite_at_extreme_logits(dtype):
    logits = jnp.asarray(ADVERSARIAL_LOGITS, dtype)
    labels = jnp.array([1, 0, 3, 2, 3])
    one_hot = jax.nn.one_hot(labels, 4)  # zero-probability entries everywhere else
    soft = optax.smooth_labels(one_hot, 0.1)
    checks = {
        "softmax_cross_entropy/one_hot": lambda z: losses.softmax_cross_entropy(z, one_hot),
        "softmax_cross_entropy/smoothed": lambda z: losses.softmax_cross_entropy(z, soft),
        "sigmoid_cross_entropy": lambda z: losses.sigmoid_cross_entropy(z, one_hot),
        "distillation": lambda z: losses.distillation_loss(z, jnp.flip(logits, 0), 2.0),
        "distillation/teacher": lambda z: losses.distillation_loss(jnp.flip(logits, 0), z, 2.0),
    }
    for name, loss in checks.items():
        values = loss(logits)
        grads = jax.grad(lambda z, loss=loss: jnp.sum(loss(z)))(logits)
        assert values.dtype == jnp.float32, name
        assert np.all(np.isfinite(np.asarray(values, np.float32))), name
        assert np.all(np.isfinite(np.asarray(grads, np.float32))), name
    # The worst case is exact: -log p[label] = 2e4 for the first row.
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(logits, one_hot)[0], 2e4, rtol=1e-2 if dtype == jnp.bfloat16 else 1e-6
    )


def test_cross_entropy_gradient_is_softmax_minus_target():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 6)).astype(np.float32)
    probs = rng.dirichlet(np.ones(6), size=5).astype(np.float32)
    grads = jax.grad(lambda z: jnp.sum(losses.softmax_cross_entropy(z, probs)))(logits)
    np.testing.assert_allclose(grads, np.exp(_np_log_softmax(logits)) - probs, atol=1e-6)


@pytest.mark.parametrize("batch_shape", [(), (5,), (2, 3)])
def test_per_example_shapes(batch_shape):
    logits = jnp.zeros((*batch_shape, 4))
    labels = jnp.zeros(batch_shape, jnp.int32)
    one_hot = jax.nn.one_hot(labels, 4)
    np.testing.assert_allclose(
        losses.softmax_cross_entropy(logits, one_hot), np.full(batch_shape, np.log(4.0)), rtol=1e-6
    )
    assert losses.sigmoid_cross_entropy(logits, one_hot).shape == batch_shape


# -- sigmoid: the binary and multi-label cases ------------------------------------


@settings(deadline=None, max_examples=25)
@given(hnp.arrays(np.float32, st.integers(1, 8), elements=st.floats(-1e4, 1e4, width=32)), st.integers(0, 2**31 - 1))
def test_binary_ce_is_softmax_ce_over_zero_and_h(h, seed):
    """The seed's derivation: sigmoid(h) = softmax([0, h])[1], so BCE(h, y) = CE([0, h], y)."""
    y = np.random.default_rng(seed).integers(0, 2, size=h.shape)
    binary = losses.sigmoid_cross_entropy(h[:, None], y[:, None].astype(np.float32))
    two_logits = losses.softmax_cross_entropy(losses.two_class_logits(jnp.asarray(h)[:, None]), jax.nn.one_hot(y, 2))
    np.testing.assert_allclose(binary, two_logits, rtol=1e-5, atol=1e-5)
    reference = -(y * _np_log_sigmoid(h) + (1 - y) * _np_log_sigmoid(-h))
    np.testing.assert_allclose(binary, reference, rtol=1e-5, atol=1e-5)


def test_multilabel_sigmoid_matches_optax_summed_over_classes():
    rng = np.random.default_rng(2)
    logits = rng.normal(scale=3.0, size=(8, 5)).astype(np.float32)
    labels = rng.integers(0, 2, size=(8, 5)).astype(np.float32)
    expected = optax.sigmoid_binary_cross_entropy(logits, labels).sum(-1)
    np.testing.assert_allclose(losses.sigmoid_cross_entropy(logits, labels), expected, rtol=1e-5)


# -- distillation ------------------------------------------------------------------


def test_distillation_matches_optax_kl_times_t_squared():
    rng = np.random.default_rng(3)
    student = rng.normal(scale=3.0, size=(6, 10)).astype(np.float32)
    teacher = rng.normal(scale=3.0, size=(6, 10)).astype(np.float32)
    temperature = 3.0
    expected = temperature**2 * optax.kl_divergence(
        jax.nn.log_softmax(student / temperature), jax.nn.softmax(teacher / temperature)
    )
    np.testing.assert_allclose(losses.distillation_loss(student, teacher, temperature), expected, rtol=1e-5, atol=1e-6)
    closed_form = temperature**2 * (
        np.exp(_np_log_softmax(teacher / temperature))
        * (_np_log_softmax(teacher / temperature) - _np_log_softmax(student / temperature))
    ).sum(-1)
    np.testing.assert_allclose(
        losses.distillation_loss(student, teacher, temperature), closed_form, rtol=1e-5, atol=1e-6
    )


def test_distillation_is_zero_with_zero_gradient_when_student_equals_teacher():
    logits = jnp.asarray(np.random.default_rng(4).normal(size=(4, 7)), jnp.float32)
    value = losses.distillation_loss(logits, logits, 2.5)
    grads = jax.grad(lambda z: jnp.sum(losses.distillation_loss(z, logits, 2.5)))(logits)
    np.testing.assert_allclose(value, 0.0, atol=1e-6)
    np.testing.assert_allclose(grads, 0.0, atol=1e-6)


def test_t_squared_keeps_gradient_magnitude_comparable_across_temperatures():
    """Without T^2 the gradient shrinks like 1/T^2; with it, it settles to a constant
    (the logit-matching limit: grad -> (student - teacher) / K for centred logits)."""
    rng = np.random.default_rng(5)
    student = rng.normal(size=(32, 10)).astype(np.float32)
    teacher = rng.normal(size=(32, 10)).astype(np.float32)
    norms = {}
    for temperature in (1.0, 4.0, 16.0, 64.0):
        grads = jax.grad(lambda z, t=temperature: jnp.sum(losses.distillation_loss(z, teacher, t)))(student)
        norms[temperature] = float(jnp.linalg.norm(grads))
    scaled = np.array([norms[t] for t in (4.0, 16.0, 64.0)])
    assert scaled.max() / scaled.min() < 1.5  # comparable with T^2
    unscaled = np.array([norms[t] / t**2 for t in (4.0, 16.0, 64.0)])
    assert unscaled.max() / unscaled.min() > 100  # collapses without it
    centred = lambda z: z - z.mean(-1, keepdims=True)  # noqa: E731
    limit = np.linalg.norm((centred(student) - centred(teacher)) / 10)
    np.testing.assert_allclose(norms[64.0], limit, rtol=0.05)


# -- focal loss -------------------------------------------------------------------------


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0, 3.5])
def test_focal_loss_matches_float64_numpy(gamma):
    """-sum_k q_k (1 - p_k)^gamma log p_k (Lin et al. 2017), soft targets included."""
    rng = np.random.default_rng(6)
    logits = rng.normal(scale=3.0, size=(16, 7)).astype(np.float32)
    targets = rng.dirichlet(np.ones(7), size=16).astype(np.float32)
    log_probs = _np_log_softmax(logits)
    expected = -(targets * (1.0 - np.exp(log_probs)) ** gamma * log_probs).sum(-1)
    np.testing.assert_allclose(losses.focal_loss(logits, targets, gamma), expected, rtol=2e-5, atol=1e-6)


def test_focal_loss_with_gamma_zero_is_cross_entropy_and_shrinks_easy_examples():
    rng = np.random.default_rng(8)
    logits = rng.normal(scale=2.0, size=(32, 5)).astype(np.float32)
    labels = jax.nn.one_hot(rng.integers(0, 5, 32), 5)
    np.testing.assert_allclose(
        losses.focal_loss(logits, labels, 0.0), losses.softmax_cross_entropy(logits, labels), rtol=1e-6
    )
    cross_entropy, focal = losses.softmax_cross_entropy(logits, labels), losses.focal_loss(logits, labels, 2.0)
    p_true = np.exp(-np.asarray(cross_entropy))
    np.testing.assert_allclose(
        focal, (1 - p_true) ** 2 * cross_entropy, rtol=1e-4, atol=1e-7
    )  # one-hot: -(1 - p_t)^g log p_t


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_loss_and_its_gradient_stay_finite_at_extreme_logits(gamma):
    logits = jnp.asarray(ADVERSARIAL_LOGITS)
    labels = jax.nn.one_hot(jnp.array([1, 0, 3, 2, 3]), 4)
    values = losses.focal_loss(logits, labels, gamma)
    grads = jax.grad(lambda z: jnp.sum(losses.focal_loss(z, labels, gamma)))(logits)
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(grads))


def test_loss_focal_trains_end_to_end(tmp_path, data_dir):
    from conftest import TINY, launch_in_process

    code, stderr = launch_in_process(f"hydra.run.dir={tmp_path}", f"data.data_dir={data_dir}", "loss=focal", *TINY)
    assert code == 0, stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["hparams"]["loss.loss_fn._target_"] == "jaxclf.losses.focal_loss"
    assert summary["hparams"]["loss.loss_fn.gamma"] == 2.0
    assert summary["test"]["accuracy"] > 0.85


def test_the_teacher_changes_the_students_loss_and_gradient_as_the_closed_form_says():
    from jaxclf.models.mlp import Linear
    from jaxclf.objectives import Distillation, Teacher
    from jaxclf.train_state import init_variables

    rng = np.random.default_rng(6)
    images = jnp.asarray(rng.normal(size=(16, 2, 2, 1)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 5, size=16))
    student = jnp.asarray(rng.normal(size=(16, 5)), jnp.float32)
    temperature, alpha = 3.0, 0.7
    model = Linear(num_classes=5)
    losses_and_grads = []
    for seed in (0, 1):  # two teachers: the same architecture, different weights
        teacher = Teacher(model.apply, init_variables(model, (2, 2, 1), jax.random.key(seed)))
        objective = Distillation(teacher=teacher, temperature=temperature, alpha=alpha)
        _, context = objective.prepare(jax.random.key(9), images, labels)

        def total(logits, context=context, objective=objective):
            return jnp.sum(objective(logits, context))

        teacher_logits = np.asarray(teacher(images), np.float64)
        z = np.asarray(student, np.float64)
        expected = alpha * temperature * (_np_softmax(z / temperature) - _np_softmax(teacher_logits / temperature))
        expected += (1 - alpha) * (_np_softmax(z) - np.eye(5)[np.asarray(labels)])
        gradient = np.asarray(jax.grad(total)(student))
        np.testing.assert_allclose(gradient, expected, rtol=1e-4, atol=1e-6)
        losses_and_grads.append((float(total(student)), gradient))
    (loss_a, grad_a), (loss_b, grad_b) = losses_and_grads
    assert abs(loss_a - loss_b) > 1e-3 and np.abs(grad_a - grad_b).max() > 1e-3  # the teacher matters


def _np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)
