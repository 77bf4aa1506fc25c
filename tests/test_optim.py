"""Optimizers: the warmup + cosine schedule, weight-decay masking, the logged learning rate."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxclf import optim


def test_schedule_matches_closed_form():
    peak, warmup, total = 0.1, 10, 110
    schedule = optim.learning_rate_schedule(peak, warmup, total)
    for step in [0, 5, 10, 35, 60, 109, 110]:
        if step < warmup:
            expected = peak * step / warmup
        else:
            expected = 0.5 * peak * (1 + np.cos(np.pi * (step - warmup) / (total - warmup)))
        np.testing.assert_allclose(schedule(step), expected, rtol=1e-5, atol=1e-8)


def test_step_schedule_matches_goyal_et_al():
    # Goyal et al. 2017: warm up linearly from eta to k*eta over 5 epochs, then /10 at epochs 30, 60 and 80.
    epoch, eta, peak = 10, 0.1, 3.2
    schedule = optim.learning_rate_schedule(
        peak, 5 * epoch, 90 * epoch, "step", [30 * epoch, 60 * epoch, 80 * epoch], 0.1, warmup_from=eta
    )
    expected = {0: eta, 25: eta + (peak - eta) / 2, 50: peak, 299: peak, 300: 0.32, 599: 0.32, 600: 0.032, 800: 0.0032}
    for step, rate in expected.items():
        np.testing.assert_allclose(schedule(step), rate, rtol=1e-5, err_msg=f"step {step}")


def test_kernel_mask_spares_biases_norms_and_embeddings():
    params = {"dense": {"kernel": jnp.ones((3, 2)), "bias": jnp.ones(2)}}
    assert optim.kernel_mask(params) == {"dense": {"kernel": True, "bias": False}}
    vit_like = {
        "patch": {
            "embedding": {"kernel": jnp.ones((2, 2, 1, 4)), "bias": jnp.ones(4)},
            "class_token": jnp.ones((1, 1, 4)),
        },
        "position_embedding": jnp.ones((1, 5, 4)),
        "norm": {"scale": jnp.ones(4), "bias": jnp.ones(4)},
    }
    assert optim.kernel_mask(vit_like) == {
        "patch": {"embedding": {"kernel": True, "bias": False}, "class_token": False},
        "position_embedding": False,
        "norm": {"scale": False, "bias": False},
    }


@pytest.mark.parametrize("make", [optim.adamw, optim.sgd])
def test_logged_learning_rate_is_the_one_used(make):
    tx = make(learning_rate=0.2, weight_decay=0.0, warmup_steps=4, total_steps=20)
    params = {"w": jnp.ones((2, 2))}
    state = tx.init(params)
    schedule = optim.learning_rate_schedule(0.2, 4, 20)
    for step in range(6):
        _, state = tx.update(params, state, params)
        np.testing.assert_allclose(optim.current_learning_rate(state), schedule(step), rtol=1e-6)


def test_adamw_matches_optax_adamw_at_constant_rate():
    """With no warmup and one step the schedule is at its peak: same update as optax.adamw."""
    params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
    grads = jax.tree.map(lambda p: 0.1 * p + 1.0, params)
    ours = optim.adamw(learning_rate=0.01, weight_decay=0.1, warmup_steps=0, total_steps=1000)
    reference = optax.adamw(0.01, weight_decay=0.1, mask=optim.kernel_mask)
    updates, _ = ours.update(grads, ours.init(params), params)
    expected, _ = reference.update(grads, reference.init(params), params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5), updates, expected)


def test_gradient_clipping():
    tx = optim.sgd(
        learning_rate=1.0, weight_decay=0.0, warmup_steps=0, total_steps=10, momentum=0.0, grad_clip_norm=1.0
    )
    params = {"w": jnp.zeros(4)}
    grads = {"w": jnp.full(4, 10.0)}
    updates, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(jnp.linalg.norm(updates["w"]), 1.0, rtol=1e-5)


def test_adamw_keeps_its_first_moment_in_mu_dtype_as_optax_does():
    params = {"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.ones(3)}
    grads = jax.tree.map(lambda p: 0.1 * p + 1.0, params)
    ours = optim.adamw(learning_rate=0.01, weight_decay=0.1, warmup_steps=0, total_steps=10**9, mu_dtype="bfloat16")
    # Injected as ours are (float32 arrays, not Python floats, which would keep b1 * mu in bfloat16).
    reference = optax.inject_hyperparams(optax.adamw, static_args=("mask", "mu_dtype"))(
        0.01, weight_decay=0.1, mask=optim.kernel_mask, mu_dtype=jnp.bfloat16
    )
    state, reference_state = ours.init(params), reference.init(params)
    for _ in range(3):
        updates, state = ours.update(grads, state, params)
        expected, reference_state = reference.update(grads, reference_state, params)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), updates, expected)
    assert [leaf.shape for leaf in jax.tree.leaves(state) if leaf.dtype == jnp.bfloat16] == [(3,), (2, 3)]  # mu only


@pytest.mark.parametrize("decay_only_kernels", [True, False])
def test_weight_decay_reaches_biases_only_when_asked(decay_only_kernels):
    """SGD's L2 decay alone (zero gradients, no momentum): update = -rate * decay * parameter."""
    params = {"kernel": jnp.ones((2, 3)), "bias": jnp.ones(3)}
    tx = optim.sgd(
        learning_rate=0.1,
        weight_decay=0.5,
        warmup_steps=0,
        total_steps=10,
        momentum=0.0,
        decay_only_kernels=decay_only_kernels,
    )
    updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
    np.testing.assert_allclose(updates["kernel"], -0.05)
    np.testing.assert_allclose(updates["bias"], -0.05 * (not decay_only_kernels))
