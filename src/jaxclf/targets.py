"""Labels -> probability vectors, inside the jitted step (the big_vision idea).

Hard labels, label smoothing, mixup/cutmix and a teacher's distribution are
all just targets ``q`` of shape ``[B, num_classes]``, so one cross-entropy
serves them all. Mixing pairs each example with its mirror in the batch
(``flip`` along the batch axis); the mixing weight ``lam`` is drawn once per
batch from ``Beta(alpha, alpha)`` with the step's rng.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxclf.losses import softmax


def one_hot(labels: jax.Array, num_classes: int) -> jax.Array:
    """Integer labels ``[...]`` -> one-hot float32 ``[..., num_classes]``."""
    return jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)


def smooth_labels(targets: jax.Array, epsilon: float) -> jax.Array:
    """``(1 - eps) q + eps / K``: moves ``eps`` of the mass to the uniform distribution."""
    return (1.0 - epsilon) * targets + epsilon / targets.shape[-1]


def sample_mixing_weight(rng: jax.Array, alpha: float) -> jax.Array:
    """``lam ~ Beta(alpha, alpha)``; ``alpha <= 0`` means no mixing (``lam = 1``)."""
    if alpha <= 0:
        return jnp.float32(1.0)
    return jax.random.beta(rng, alpha, alpha).astype(jnp.float32)


def mix_targets(targets: jax.Array, lam: jax.Array) -> jax.Array:
    """``lam q + (1 - lam) flip(q)``: the targets of a mixed batch."""
    return lam * targets + (1.0 - lam) * jnp.flip(targets, axis=0)


def mixup(images: jax.Array, lam: jax.Array) -> jax.Array:
    """Zhang et al.'s mixup: ``lam x + (1 - lam) flip(x)`` (``lam = 1`` is the identity)."""
    return (lam * images + (1.0 - lam) * jnp.flip(images, axis=0)).astype(images.dtype)


def cutmix(rng: jax.Array, images: jax.Array, lam: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Yun et al.'s cutmix: paste a box of ``flip(x)`` covering about ``1 - lam`` of each image.

    The box's centre is uniform; clipped at the border, its true area decides
    the returned weight ``lam'`` (the fraction of pixels kept)."""
    height, width = images.shape[1], images.shape[2]
    cut = jnp.sqrt(1.0 - lam)
    cut_h, cut_w = cut * height, cut * width
    centre_y, centre_x = jax.random.uniform(rng, (2,)) * jnp.array([height, width])
    top, bottom = jnp.clip(centre_y - cut_h / 2, 0, height), jnp.clip(centre_y + cut_h / 2, 0, height)
    left, right = jnp.clip(centre_x - cut_w / 2, 0, width), jnp.clip(centre_x + cut_w / 2, 0, width)
    top, bottom, left, right = (jnp.round(v).astype(jnp.int32) for v in (top, bottom, left, right))
    rows = jnp.arange(height)[:, None]
    cols = jnp.arange(width)[None, :]
    inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)  # [H, W]
    mixed = jnp.where(inside[None, :, :, None], jnp.flip(images, axis=0), images)
    kept = 1.0 - jnp.mean(inside.astype(jnp.float32))
    return mixed, kept


def teacher_targets(teacher_logits: jax.Array, temperature: float = 1.0) -> jax.Array:
    """A teacher's softened distribution ``softmax(z / T)`` as targets."""
    return softmax(teacher_logits / temperature)
