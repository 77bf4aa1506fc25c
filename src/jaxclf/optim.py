"""Optimizers: optax transformations with a linear warmup, then a cosine decay
to 0 (``decay=cosine``) or a step decay (``decay=step``: the rate times
``decay_factor`` at each of ``decay_steps``, as in Goyal et al. 2017).

The learning rate is injected as a hyperparameter (``optax.inject_hyperparams``)
so its current value sits in the optimizer state, where the trainer reads it
for the ``train/learning_rate`` scalar. Weight decay applies to kernels only
(``decay_only_kernels=false``: to every parameter, as PyTorch's optimizers do).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import jax
import jax.numpy as jnp
import optax

from jaxclf.config.choices import Decay, MomentDtype


def learning_rate_schedule(
    learning_rate: float,
    warmup_steps: int,
    total_steps: int,
    decay: Decay = Decay.cosine,
    decay_steps: tuple[int, ...] = (),
    decay_factor: float = 0.1,
    warmup_from: float = 0.0,
) -> optax.Schedule:
    """``warmup_from`` -> ``learning_rate`` linearly over ``warmup_steps``, then ``decay``."""
    if Decay(decay) == Decay.cosine:
        return optax.warmup_cosine_decay_schedule(
            init_value=warmup_from,
            peak_value=learning_rate,
            warmup_steps=warmup_steps,
            decay_steps=max(total_steps, warmup_steps + 1),
            end_value=0.0,
        )
    warmup = optax.linear_schedule(warmup_from, learning_rate, warmup_steps)
    steps = optax.piecewise_constant_schedule(
        learning_rate, {step - warmup_steps: decay_factor for step in decay_steps}
    )
    return optax.join_schedules([warmup, steps], [warmup_steps])


def kernel_mask(params: optax.Params) -> optax.Params:
    """True for the parameters weight decay should shrink: the ``kernel`` of every
    dense and convolution layer. Biases, normalisation scales, position
    embeddings and class tokens are spared (as timm and big_vision do)."""

    def is_kernel(path, _) -> bool:
        last = path[-1]
        return getattr(last, "key", getattr(last, "name", None)) == "kernel"

    return jax.tree_util.tree_map_with_path(is_kernel, params)


def _decay_mask(decay_only_kernels: bool) -> Callable[[optax.Params], optax.Params] | None:
    """Which parameters weight decay shrinks: the kernels, or (None) every one, as PyTorch's optimizers do."""
    return kernel_mask if decay_only_kernels else None


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
    decay: Decay = Decay.cosine,
    decay_steps: tuple[int, ...] = (),
    decay_factor: float = 0.1,
    warmup_from: float = 0.0,
    decay_only_kernels: bool = True,
    mu_dtype: MomentDtype = MomentDtype.float32,
) -> optax.GradientTransformation:
    """AdamW (decoupled weight decay: optax's ``weight_decay`` is multiplied by
    the learning rate) on the warmup + ``decay`` schedule, its first moment
    kept in ``mu_dtype``."""
    schedule = learning_rate_schedule(
        learning_rate, warmup_steps, total_steps, decay, decay_steps, decay_factor, warmup_from
    )
    tx = optax.inject_hyperparams(optax.adamw, static_args=("mask", "mu_dtype"))(
        learning_rate=schedule,
        b1=b1,
        b2=b2,
        eps=eps,
        weight_decay=weight_decay,
        mask=_decay_mask(decay_only_kernels),
        mu_dtype=jnp.dtype(MomentDtype(mu_dtype).value),
    )
    return _clipped(tx, grad_clip_norm)


def _sgd_with_decay(
    learning_rate: optax.ScalarOrSchedule,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    decay_only_kernels: bool,
) -> optax.GradientTransformation:
    return optax.chain(
        optax.add_decayed_weights(weight_decay, mask=_decay_mask(decay_only_kernels)),
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
    decay: Decay = Decay.cosine,
    decay_steps: tuple[int, ...] = (),
    decay_factor: float = 0.1,
    warmup_from: float = 0.0,
    decay_only_kernels: bool = True,
) -> optax.GradientTransformation:
    """SGD with (Nesterov) momentum and L2 weight decay on the warmup + ``decay`` schedule."""
    schedule = learning_rate_schedule(
        learning_rate, warmup_steps, total_steps, decay, decay_steps, decay_factor, warmup_from
    )
    tx = optax.inject_hyperparams(_sgd_with_decay, static_args=("momentum", "nesterov", "decay_only_kernels"))(
        learning_rate=schedule,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
        decay_only_kernels=decay_only_kernels,
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
