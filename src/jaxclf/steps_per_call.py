"""How many training steps one jitted call runs when ``trainer.steps_per_call``
is null: chosen from an estimate of the step's FLOPs, read from XLA's cost
analysis of the lowered forward pass (nothing is compiled)."""

from __future__ import annotations

import logging
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxclf.train_state import abstract_variables

logger = logging.getLogger(__name__)

FUSE_BELOW_FLOPS = 1e9
FUSED_STEPS = 10


def fused_steps_per_call(step_flops: float) -> int:
    """``FUSED_STEPS`` for a step of under ``FUSE_BELOW_FLOPS`` (there, a
    call's dispatch is a visible share of it: the default MLP trains faster
    fused), else 1: a costly step gains nothing from fusing, and XLA:CPU runs
    large loop bodies slower than the same step alone (README, "Benchmarks")."""
    return FUSED_STEPS if step_flops < FUSE_BELOW_FLOPS else 1


def chosen_steps_per_call(model: nn.Module, image_shape: tuple[int, ...], batch_size: int) -> int:
    """``fused_steps_per_call`` of the estimated cost of one step of ``model`` over ``batch_size`` images."""
    flops = train_step_flops(model, image_shape, batch_size)
    chosen = fused_steps_per_call(flops)
    logger.info("trainer.steps_per_call=%d (chosen: about %.2g FLOPs per step)", chosen, flops)
    return chosen


def _lowered_forward(model: nn.Module, variables: dict[str, Any], image_shape: tuple[int, ...], batch_size: int):
    """One evaluation forward pass over ``batch_size`` images, lowered (traced, not compiled)."""
    images = jax.ShapeDtypeStruct((batch_size, *image_shape), jnp.float32)
    return jax.jit(lambda v, x: model.apply(v, x, train=False)).lower(variables, images)


def forward_flops(
    model: nn.Module, variables: dict[str, Any], image_shape: tuple[int, ...], batch_size: int = 1
) -> float:
    """FLOPs of one evaluation forward pass over ``batch_size`` images (XLA's count;
    a multiply-add is two)."""
    return compiled_flops(_lowered_forward(model, variables, image_shape, batch_size).compile())


def train_step_flops(model: nn.Module, image_shape: tuple[int, ...], batch_size: int) -> float:
    """An estimate of one training step's FLOPs over ``batch_size`` images:
    three forward passes' worth (the backward pass costs about two), counted
    on the unoptimised program, so nothing is compiled."""
    variables = abstract_variables(model, image_shape)
    return 3 * compiled_flops(_lowered_forward(model, variables, image_shape, batch_size))


def compiled_flops(compiled: Any) -> float:
    """FLOPs of a compiled (or lowered) JAX computation, from XLA's cost analysis (NaN if absent)."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # older JAX: one dict per device program
        analysis = analysis[0]
    if analysis is None:  # not every backend counts a lowered program (JAX 0.11's CUDA does not)
        return float("nan")
    return float(analysis.get("flops", float("nan")))
