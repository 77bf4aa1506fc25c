"""What training minimises: targets composed with a per-example loss.

An objective is a pytree (a ``flax.struct`` dataclass) passed into the
jitted step, in two parts:

- ``prepare(rng, images, labels) -> (images, context)`` runs before the
  model: mixup/cutmix mix the images, a teacher computes its logits;
- ``objective(logits, context) -> per-example loss`` turns the labels into
  dense probability targets (one-hot, smoothed, mixed) and applies
  ``loss_fn(logits, targets)``, any function of ``jaxclf.losses``' shape.

``loss=ce`` and ``loss=soft_ce`` are the same softmax cross-entropy with
different targets; ``loss=bce`` applies independent sigmoids to the same
targets; ``loss=distill`` adds a teacher's softened distribution. Nothing here
reads files: ``jaxclf.restore`` restores a teacher from its run directory.

Labels become probability vectors inside the jitted step (the big_vision
idea): hard labels, label smoothing, mixup/cutmix and a teacher's
distribution are all targets ``q`` of shape ``[B, num_classes]``, so one
cross-entropy serves them all. Mixing pairs each example with its mirror in
the batch (``flip`` along the batch axis); the mixing weight ``lam`` is drawn
once per batch from ``Beta(alpha, alpha)`` with the step's rng.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxclf import losses
from jaxclf.config.rules import Fraction, OffOrPositive, Positive, check_arguments

Context = dict[str, jax.Array]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]


# -- targets ---------------------------------------------------------------------


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


# -- objectives ------------------------------------------------------------------


class Objective(struct.PyTreeNode):
    """``loss_fn`` against smoothed, mixed targets.

    With both alphas positive, each batch uses mixup or cutmix, chosen by a coin flip."""

    loss_fn: LossFn = struct.field(pytree_node=False, default=losses.softmax_cross_entropy)
    label_smoothing: Fraction = struct.field(pytree_node=False, default=0.0)
    mixup_alpha: OffOrPositive = struct.field(pytree_node=False, default=0.0)
    cutmix_alpha: OffOrPositive = struct.field(pytree_node=False, default=0.0)

    def __post_init__(self) -> None:
        arguments = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        check_arguments(type(self), arguments)

    def prepare(self, rng: jax.Array, images: jax.Array, labels: jax.Array) -> tuple[jax.Array, Context]:
        if self.mixup_alpha <= 0 and self.cutmix_alpha <= 0:
            return images, {"labels": labels, "lam": jnp.float32(1.0)}
        mixup_rng, cutmix_rng, box_rng, coin_rng = jax.random.split(rng, 4)
        candidates = []
        if self.mixup_alpha > 0:
            lam = sample_mixing_weight(mixup_rng, self.mixup_alpha)
            candidates.append((mixup(images, lam), lam))
        if self.cutmix_alpha > 0:
            lam = sample_mixing_weight(cutmix_rng, self.cutmix_alpha)
            candidates.append(cutmix(box_rng, images, lam))
        mixed, lam = candidates[0]
        if len(candidates) == 2:
            use_cutmix = jax.random.bernoulli(coin_rng)
            mixed = jnp.where(use_cutmix, candidates[1][0], mixed)
            lam = jnp.where(use_cutmix, candidates[1][1], lam)
        return mixed, {"labels": labels, "lam": lam}

    def targets(self, context: Context, num_outputs: int) -> jax.Array:
        """Dense probability targets ``[B, num_outputs]`` for the prepared batch."""
        return dense_targets(context["labels"], num_outputs, self.label_smoothing, context["lam"])

    def __call__(self, logits: jax.Array, context: Context) -> jax.Array:
        return self.loss_fn(logits, self.targets(context, logits.shape[-1]))


class Teacher(struct.PyTreeNode):
    """A trained model's forward pass in evaluation mode: its ``apply_fn`` and ``variables``."""

    apply_fn: Callable[..., Any] = struct.field(pytree_node=False)
    variables: Any

    def __call__(self, images: jax.Array) -> jax.Array:
        logits = self.apply_fn(self.variables, images, train=False)
        return jax.lax.stop_gradient(logits.astype(jnp.float32))


class Distillation(Objective):
    """``alpha * T^2 KL(teacher_T || student_T) + (1 - alpha) * loss_fn(targets)``.

    The teacher sees the same (possibly mixed) images as the student."""

    teacher: Teacher | None = None
    temperature: Positive = struct.field(pytree_node=False, default=4.0)
    alpha: Fraction = struct.field(pytree_node=False, default=0.9)

    def prepare(self, rng: jax.Array, images: jax.Array, labels: jax.Array) -> tuple[jax.Array, Context]:
        if self.teacher is None:
            raise ValueError("teacher=None: distillation needs a teacher")
        images, context = super().prepare(rng, images, labels)
        return images, {**context, "teacher_logits": self.teacher(images)}

    def __call__(self, logits: jax.Array, context: Context) -> jax.Array:
        distill = losses.distillation_loss(logits, context["teacher_logits"], self.temperature)
        return self.alpha * distill + (1.0 - self.alpha) * super().__call__(logits, context)
