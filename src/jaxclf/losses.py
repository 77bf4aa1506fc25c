"""Cross-entropy and the softmax it rests on, in numerically stable form.

A classifier's logits ``z`` define a distribution ``p = softmax(z)`` over
classes; training minimises the negative log-likelihood ``-log p[y]`` of the
true class. Everything here works in log-probabilities and subtracts the max
logit first, so losses and gradients stay finite for logits as large as +-1e4.

Shapes: ``logits`` is ``[..., num_classes]``; integer ``labels`` are ``[...]``;
probability ``targets`` are ``[..., num_classes]``. Every loss is returned per
example (shape ``[...]``) for the caller to reduce. Inputs in bfloat16 or
float16 are computed in float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _float32(x: jax.Array) -> jax.Array:
    return jnp.asarray(x).astype(jnp.promote_types(jnp.asarray(x).dtype, jnp.float32))


def log_softmax(logits: jax.Array) -> jax.Array:
    """``log softmax(z) = (z - max z) - log sum exp(z - max z)``."""
    logits = _float32(logits)
    shifted = logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))


def softmax(logits: jax.Array) -> jax.Array:
    """``exp(log softmax(z))`` = ``exp(z - max z) / sum exp(z - max z)``: no overflow for large logits."""
    return jnp.exp(log_softmax(logits))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Negative log-likelihood ``-log softmax(logits)[label]`` for integer labels."""
    log_probs = log_softmax(logits)
    return -jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


def soft_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """``-sum_k q_k log p_k`` for a probability vector ``q`` (soft labels).

    With one-hot ``q`` this is ``cross_entropy``; zero entries of ``q``
    contribute exactly zero (``log p_k`` is finite, never ``-inf``)."""
    return -jnp.sum(_float32(targets) * log_softmax(logits), axis=-1)


def log_sigmoid(logits: jax.Array) -> jax.Array:
    """``log sigmoid(h) = -log(1 + exp(-h))``, stable for either sign of ``h``."""
    logits = _float32(logits)
    return jnp.minimum(logits, 0.0) - jnp.log1p(jnp.exp(-jnp.abs(logits)))


def sigmoid_binary_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Independent sigmoids: ``-sum_k [t_k log s(h_k) + (1 - t_k) log s(-h_k)]``.

    One logit per example (``[..., 1]``) is the binary case: ``s(h)`` is the
    probability of class 1, and the loss equals softmax cross-entropy over the
    two logits ``[0, h]``. With ``K`` logits it is the multi-label loss
    (big_vision's ``sigmoid_xent``), summed over classes."""
    targets = _float32(targets)
    return -jnp.sum(targets * log_sigmoid(logits) + (1.0 - targets) * log_sigmoid(-logits), axis=-1)


def kl_divergence(target_logits: jax.Array, logits: jax.Array) -> jax.Array:
    """``KL(softmax(target_logits) || softmax(logits))``, from log-probabilities."""
    target_log_probs = log_softmax(target_logits)
    return jnp.sum(jnp.exp(target_log_probs) * (target_log_probs - log_softmax(logits)), axis=-1)


def distillation_loss(student_logits: jax.Array, teacher_logits: jax.Array, temperature: float) -> jax.Array:
    """Hinton et al.'s knowledge distillation: ``T^2 KL(teacher_T || student_T)``.

    Both distributions are softened by ``T``; the ``T^2`` factor keeps the
    gradient's magnitude comparable across temperatures (it scales as ``1/T^2``
    otherwise). The teacher receives no gradient."""
    teacher_logits = jax.lax.stop_gradient(teacher_logits)
    return temperature**2 * kl_divergence(_float32(teacher_logits) / temperature, _float32(student_logits) / temperature)


def two_class_logits(logits: jax.Array) -> jax.Array:
    """Logits over classes. A single logit ``h`` (a binary sigmoid head) becomes
    ``[0, h]``: ``softmax([0, h])[1] = sigmoid(h)``, so one evaluation serves both."""
    if logits.shape[-1] == 1:
        return jnp.concatenate([jnp.zeros_like(logits), logits], axis=-1)
    return logits
