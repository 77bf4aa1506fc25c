"""Optimizers: optax transformations with linear warmup and cosine decay.

The learning rate is injected as a hyperparameter (``optax.inject_hyperparams``)
so its current value sits in the optimizer state, where the trainer reads it
for the ``train/learning_rate`` scalar. Weight decay applies to kernels only
(parameters with more than one dimension), not to biases or norm scales.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import optax


def warmup_cosine_schedule(learning_rate: float, warmup_steps: int, total_steps: int) -> optax.Schedule:
    """0 -> ``learning_rate`` linearly over ``warmup_steps``, then cosine to 0 at ``total_steps``."""
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=learning_rate,
        warmup_steps=warmup_steps,
        decay_steps=max(total_steps, warmup_steps + 1),
        end_value=0.0,
    )


def kernel_mask(params: optax.Params) -> optax.Params:
    """True for the parameters weight decay should shrink: the ``kernel`` of every
    dense and convolution layer. Biases, normalisation scales, position
    embeddings and class tokens are spared (as timm and big_vision do)."""

    def is_kernel(path, _) -> bool:
        last = path[-1]
        return getattr(last, "key", getattr(last, "name", None)) == "kernel"

    return jax.tree_util.tree_map_with_path(is_kernel, params)


def _clipped(tx: optax.GradientTransformation, grad_clip_norm: Optional[float]) -> optax.GradientTransformation:
    if grad_clip_norm is None:
        return tx
    return optax.chain(optax.clip_by_global_norm(grad_clip_norm), tx)


def adamw(
    learning_rate: float,
    weight_decay: float,
    warmup_steps: int,
    total_steps: int,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    grad_clip_norm: Optional[float] = None,
) -> optax.GradientTransformation:
    """AdamW (decoupled weight decay) on the warmup + cosine schedule."""
    tx = optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
        learning_rate=warmup_cosine_schedule(learning_rate, warmup_steps, total_steps),
        b1=b1,
        b2=b2,
        eps=eps,
        weight_decay=weight_decay,
        mask=kernel_mask,
    )
    return _clipped(tx, grad_clip_norm)


def _sgd_with_decay(
    learning_rate: optax.ScalarOrSchedule, momentum: float, nesterov: bool, weight_decay: float
) -> optax.GradientTransformation:
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=kernel_mask),
        optax.sgd(learning_rate, momentum=momentum, nesterov=nesterov),
    )


def sgd(
    learning_rate: float,
    weight_decay: float,
    warmup_steps: int,
    total_steps: int,
    momentum: float = 0.9,
    nesterov: bool = False,
    grad_clip_norm: Optional[float] = None,
) -> optax.GradientTransformation:
    """SGD with (Nesterov) momentum and L2 weight decay on the warmup + cosine schedule."""
    tx = optax.inject_hyperparams(_sgd_with_decay, static_args=("momentum", "nesterov"))(
        learning_rate=warmup_cosine_schedule(learning_rate, warmup_steps, total_steps),
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
    )
    return _clipped(tx, grad_clip_norm)


def current_learning_rate(opt_state: optax.OptState) -> jax.Array:
    """The learning rate of the latest update; NaN for an optimizer that does
    not inject it (``optax.inject_hyperparams``)."""
    # hyperparams_states holds the schedule's own state under the same key;
    # the value itself is the one array leaf named "learning_rate".
    value = optax.tree_utils.tree_get(
        opt_state, "learning_rate", filtering=lambda _, value: isinstance(value, jax.Array)
    )
    return jnp.float32(jnp.nan) if value is None else value
