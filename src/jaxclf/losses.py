"""Cross-entropy and the softmax it rests on, in numerically stable form.

A classifier's logits ``z`` define a distribution ``p = softmax(z)`` over
classes; training minimises the negative log-likelihood ``-log p[y]`` of the
true class. Everything here works in log-probabilities and subtracts the max
logit first, so losses stay finite for logits as large as +-1e4.

Shapes: ``logits`` is ``[..., num_classes]``; integer ``labels`` are ``[...]``;
losses are returned per example (``[...]``) for the caller to reduce.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


def log_softmax(logits: jax.Array) -> jax.Array:
    """``log softmax(z) = (z - max z) - log sum exp(z - max z)``."""
    shifted = logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    return shifted - jnp.log(jnp.sum(jnp.exp(shifted), axis=-1, keepdims=True))


def softmax(logits: jax.Array) -> jax.Array:
    """``exp(z - max z) / sum exp(z - max z)``: no overflow for large logits."""
    shifted = logits - jax.lax.stop_gradient(jnp.max(logits, axis=-1, keepdims=True))
    unnormalised = jnp.exp(shifted)
    return unnormalised / jnp.sum(unnormalised, axis=-1, keepdims=True)


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Negative log-likelihood ``-log softmax(logits)[label]`` per example."""
    log_probs = log_softmax(logits)
    return -jnp.take_along_axis(log_probs, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


@dataclasses.dataclass(frozen=True)
class CrossEntropyLoss:
    """Hard-label softmax cross-entropy: the ``loss=ce`` option."""

    def __call__(self, logits: jax.Array, labels: jax.Array) -> jax.Array:
        return cross_entropy(logits.astype(jnp.float32), labels)
