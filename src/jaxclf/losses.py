"""Per-example losses: ``loss(logits, targets) -> [...]``.

A classifier's logits ``z`` define a distribution ``p = softmax(z)`` over
classes; training minimises the cross-entropy ``-sum_k q_k log p_k`` between
probability targets ``q`` and ``p``. Every function here takes logits
``[..., K]`` and dense probability targets ``[..., K]`` (one-hot, smoothed,
mixed or a teacher's; see ``jaxclf.objectives``) and returns one loss per
example (``[...]``) for the caller to reduce.

They rest on ``jax.nn.log_softmax`` and ``jax.nn.log_sigmoid``, which
subtract the max logit (or use the ``log1p`` form) before exponentiating:
losses and gradients stay finite for logits as large as +-1e4. Inputs in
bfloat16 or float16 are computed in float32.

A new loss is one function of this shape plus one YAML file in
``conf/loss/`` naming it with ``_partial_: true`` (see ``conf/loss/focal.yaml``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxclf.errors import ConfigError


def _float32(x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


def _require_two_logits(logits: jax.Array) -> None:
    if logits.shape[-1] < 2:
        raise ConfigError(
            f"the model outputs {logits.shape[-1]} logit (model.num_classes={logits.shape[-1]}); a softmax loss "
            "needs at least 2, a single-logit head trains with loss=bce"
        )


def softmax_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """``-sum_k q_k log softmax(z)_k``: the negative log-likelihood for one-hot
    ``q``; zero entries of ``q`` contribute exactly zero (``log p_k`` is finite)."""
    _require_two_logits(logits)
    return optax.losses.softmax_cross_entropy(_float32(logits), _float32(targets))


def sigmoid_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Independent sigmoids, summed over outputs:
    ``-sum_k [q_k log s(h_k) + (1 - q_k) log s(-h_k)]``.

    One logit per example (``[..., 1]``) is the binary case: ``s(h)`` is the
    probability of class 1, and the loss equals softmax cross-entropy over the
    two logits ``[0, h]``. With ``K`` logits it is the multi-label loss
    (big_vision's ``sigmoid_xent``)."""
    return jnp.sum(optax.losses.sigmoid_binary_cross_entropy(_float32(logits), _float32(targets)), axis=-1)


def focal_loss(logits: jax.Array, targets: jax.Array, gamma: float = 2.0) -> jax.Array:
    """Lin et al.'s focal loss: ``-sum_k q_k (1 - p_k)^gamma log p_k``.

    Cross-entropy whose terms shrink as their class is already predicted
    well, so easy examples count less; ``gamma = 0`` is softmax cross-entropy."""
    _require_two_logits(logits)
    log_probs = jax.nn.log_softmax(_float32(logits))
    # 1 - p_k from log p_k without cancellation, kept off 0 so that gamma < 1 has a finite gradient.
    remaining = jnp.maximum(-jnp.expm1(log_probs), 1e-12)
    return -jnp.sum(_float32(targets) * remaining**gamma * log_probs, axis=-1)


def distillation_loss(student_logits: jax.Array, teacher_logits: jax.Array, temperature: float) -> jax.Array:
    """Hinton et al.'s knowledge distillation: ``T^2 KL(teacher_T || student_T)``.

    Both distributions are softened by ``T``; the ``T^2`` factor keeps the
    gradient's magnitude comparable across temperatures (it scales as ``1/T^2``
    otherwise). The teacher receives no gradient."""
    teacher = jax.nn.log_softmax(jax.lax.stop_gradient(_float32(teacher_logits)) / temperature)
    student = jax.nn.log_softmax(_float32(student_logits) / temperature)
    return temperature**2 * optax.losses.kl_divergence_with_log_targets(student, teacher)


def two_class_logits(logits: jax.Array) -> jax.Array:
    """Logits over classes. A single logit ``h`` (a binary sigmoid head) becomes
    ``[0, h]``: ``softmax([0, h])[1] = sigmoid(h)``, so one evaluation serves both."""
    if logits.shape[-1] == 1:
        return jnp.concatenate([jnp.zeros_like(logits), logits], axis=-1)
    return logits
