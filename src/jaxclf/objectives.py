"""What training minimises: the ``loss`` config group's objects.

Each objective is a pytree (a ``flax.struct`` dataclass) passed into the
jitted step, in two parts:

- ``prepare(rng, images, labels) -> (images, context)`` runs before the
  model: mixup/cutmix mix the images, a teacher computes its logits;
- ``objective(logits, context) -> per-example loss`` turns the labels into
  dense probability targets (one-hot, smoothed, mixed) and applies one loss.

``ce`` and ``soft_ce`` are the same softmax cross-entropy with different
targets; ``bce`` applies independent sigmoids to the same targets; ``distill``
adds a teacher's softened distribution.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Optional, Protocol

import jax
import jax.numpy as jnp
from flax import struct

from jaxclf import losses, targets
from jaxclf.errors import ConfigError

Context = dict[str, jax.Array]


class Objective(Protocol):
    """What the train step needs of a ``loss`` option (see the module docstring)."""

    def prepare(self, rng: jax.Array, images: jax.Array, labels: jax.Array) -> tuple[jax.Array, Context]: ...

    def __call__(self, logits: jax.Array, context: Context) -> jax.Array: ...


class TargetRecipe(struct.PyTreeNode):
    """Label smoothing and mixup/cutmix, shared by every objective.

    With both alphas positive, each batch uses one of the two, chosen by a coin flip."""

    label_smoothing: float = struct.field(pytree_node=False, default=0.0)
    mixup_alpha: float = struct.field(pytree_node=False, default=0.0)
    cutmix_alpha: float = struct.field(pytree_node=False, default=0.0)

    def prepare(self, rng: jax.Array, images: jax.Array, labels: jax.Array) -> tuple[jax.Array, Context]:
        mixup_rng, cutmix_rng, box_rng, coin_rng = jax.random.split(rng, 4)
        lam = jnp.float32(1.0)
        if self.mixup_alpha > 0:
            lam = targets.sample_mixing_weight(mixup_rng, self.mixup_alpha)
            mixed = targets.mixup(images, lam)
        if self.cutmix_alpha > 0:
            cut_images, kept = targets.cutmix(box_rng, images, targets.sample_mixing_weight(cutmix_rng, self.cutmix_alpha))
            if self.mixup_alpha > 0:
                use_cutmix = jax.random.bernoulli(coin_rng)
                mixed = jnp.where(use_cutmix, cut_images, mixed)
                lam = jnp.where(use_cutmix, kept, lam)
            else:
                mixed, lam = cut_images, kept
        if self.mixup_alpha > 0 or self.cutmix_alpha > 0:
            images = mixed
        return images, {"labels": labels, "lam": lam}

    def dense_targets(self, context: Context, num_outputs: int) -> jax.Array:
        """Smoothed, mixed probability targets ``[B, num_outputs]``.

        A single output is the binary case: the target is the (smoothed,
        mixed) probability of class 1."""
        dense = targets.smooth_labels(targets.one_hot(context["labels"], max(num_outputs, 2)), self.label_smoothing)
        if num_outputs == 1:
            dense = dense[..., 1:]
        return targets.mix_targets(dense, context["lam"])


class SoftmaxCrossEntropy(TargetRecipe):
    """Softmax cross-entropy against (soft) targets: ``loss=ce`` and ``loss=soft_ce``."""

    def __call__(self, logits: jax.Array, context: Context) -> jax.Array:
        if logits.shape[-1] < 2:
            raise ConfigError(
                f"the model outputs {logits.shape[-1]} logit (model.num_classes={logits.shape[-1]}); softmax "
                "cross-entropy needs at least 2, a single-logit head trains with loss=bce"
            )
        return losses.soft_cross_entropy(logits, self.dense_targets(context, logits.shape[-1]))


class SigmoidCrossEntropy(TargetRecipe):
    """Independent sigmoids against the same targets: ``loss=bce``.

    One logit per example is the binary case; ``K`` logits the multi-label one."""

    def __call__(self, logits: jax.Array, context: Context) -> jax.Array:
        return losses.sigmoid_binary_cross_entropy(logits, self.dense_targets(context, logits.shape[-1]))


class Distillation(TargetRecipe):
    """``alpha * T^2 KL(teacher_T || student_T) + (1 - alpha) * CE(targets)``: ``loss=distill``.

    The teacher sees the same (possibly mixed) images as the student."""

    teacher_apply: Callable[..., jax.Array] = struct.field(pytree_node=False, default=None)
    teacher_variables: Any = None
    temperature: float = struct.field(pytree_node=False, default=1.0)
    alpha: float = struct.field(pytree_node=False, default=0.5)

    def prepare(self, rng: jax.Array, images: jax.Array, labels: jax.Array) -> tuple[jax.Array, Context]:
        images, context = super().prepare(rng, images, labels)
        teacher_logits = self.teacher_apply(self.teacher_variables, images, train=False)
        return images, {**context, "teacher_logits": jax.lax.stop_gradient(teacher_logits.astype(jnp.float32))}

    def __call__(self, logits: jax.Array, context: Context) -> jax.Array:
        distill = losses.distillation_loss(logits, context["teacher_logits"], self.temperature)
        hard = losses.soft_cross_entropy(logits, self.dense_targets(context, logits.shape[-1]))
        return self.alpha * distill + (1.0 - self.alpha) * hard


def distillation_from_run(
    teacher: Optional[str],
    temperature: float,
    alpha: float,
    num_classes: int,
    image_shape: list[int],
    label_smoothing: float = 0.0,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
) -> Distillation:
    """A ``Distillation`` whose teacher is the latest checkpoint of an earlier jaxclf run."""
    from jaxclf.checkpointing import restore_model_from_run

    if not teacher or not os.path.isdir(teacher):
        raise ConfigError(f"loss.teacher={teacher!r} is not a run directory; give the directory of a finished jaxclf run")
    if temperature <= 0:
        raise ConfigError(f"loss.temperature={temperature} is not valid; it must be positive")
    if not 0 <= alpha <= 1:
        raise ConfigError(f"loss.alpha={alpha} is not valid; it must lie in [0, 1]")
    model, variables, teacher_cfg = restore_model_from_run(teacher)
    if teacher_cfg.data.num_classes != num_classes or list(teacher_cfg.data.image_shape) != list(image_shape):
        raise ConfigError(
            f"loss.teacher={teacher!r} was trained on {teacher_cfg.data.num_classes} classes of "
            f"{list(teacher_cfg.data.image_shape)} images; this run needs {num_classes} classes of {list(image_shape)}"
        )
    return Distillation(
        teacher_apply=model.apply,
        teacher_variables=variables,
        temperature=temperature,
        alpha=alpha,
        label_smoothing=label_smoothing,
        mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha,
    )
