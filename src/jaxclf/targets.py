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
import optax


def dense_targets(labels: jax.Array, num_outputs: int, label_smoothing: float, lam: jax.Array) -> jax.Array:
    """Integer labels -> smoothed, mixed probability targets ``[B, num_outputs]``.

    Smoothing moves ``label_smoothing`` of the mass to the uniform distribution
    (``optax.smooth_labels``). A single output is the binary case: the target
    is the (smoothed, mixed) probability of class 1."""
    targets = optax.smooth_labels(jax.nn.one_hot(labels, max(num_outputs, 2)), label_smoothing)
    if num_outputs == 1:
        targets = targets[..., 1:]
    return mix_targets(targets, lam)


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
