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
reads files: ``jaxclf.runs`` restores a teacher from its run directory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxclf import losses, targets
from jaxclf.argument_rules import check_arguments, target_name

Context = dict[str, jax.Array]
LossFn = Callable[[jax.Array, jax.Array], jax.Array]


class Objective(struct.PyTreeNode):
    """``loss_fn`` against smoothed, mixed targets.

    With both alphas positive, each batch uses mixup or cutmix, chosen by a coin flip."""

    loss_fn: LossFn = struct.field(pytree_node=False, default=losses.softmax_cross_entropy)
    label_smoothing: float = struct.field(pytree_node=False, default=0.0)
    mixup_alpha: float = struct.field(pytree_node=False, default=0.0)
    cutmix_alpha: float = struct.field(pytree_node=False, default=0.0)

    def __post_init__(self) -> None:
        arguments = {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}
        check_arguments(target_name(type(self)), arguments)

    def prepare(self, rng: jax.Array, images: jax.Array, labels: jax.Array) -> tuple[jax.Array, Context]:
        if self.mixup_alpha <= 0 and self.cutmix_alpha <= 0:
            return images, {"labels": labels, "lam": jnp.float32(1.0)}
        mixup_rng, cutmix_rng, box_rng, coin_rng = jax.random.split(rng, 4)
        candidates = []
        if self.mixup_alpha > 0:
            lam = targets.sample_mixing_weight(mixup_rng, self.mixup_alpha)
            candidates.append((targets.mixup(images, lam), lam))
        if self.cutmix_alpha > 0:
            lam = targets.sample_mixing_weight(cutmix_rng, self.cutmix_alpha)
            candidates.append(targets.cutmix(box_rng, images, lam))
        mixed, lam = candidates[0]
        if len(candidates) == 2:
            use_cutmix = jax.random.bernoulli(coin_rng)
            mixed = jnp.where(use_cutmix, candidates[1][0], mixed)
            lam = jnp.where(use_cutmix, candidates[1][1], lam)
        return mixed, {"labels": labels, "lam": lam}

    def targets(self, context: Context, num_outputs: int) -> jax.Array:
        """Dense probability targets ``[B, num_outputs]`` for the prepared batch."""
        return targets.dense_targets(context["labels"], num_outputs, self.label_smoothing, context["lam"])

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
    temperature: float = struct.field(pytree_node=False, default=4.0)
    alpha: float = struct.field(pytree_node=False, default=0.9)

    def prepare(self, rng: jax.Array, images: jax.Array, labels: jax.Array) -> tuple[jax.Array, Context]:
        if self.teacher is None:
            raise ValueError("teacher=None: distillation needs a teacher")
        images, context = super().prepare(rng, images, labels)
        return images, {**context, "teacher_logits": self.teacher(images)}

    def __call__(self, logits: jax.Array, context: Context) -> jax.Array:
        distill = losses.distillation_loss(logits, context["teacher_logits"], self.temperature)
        return self.alpha * distill + (1.0 - self.alpha) * super().__call__(logits, context)
