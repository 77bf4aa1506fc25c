"""``mode=describe``: a model's parameters, FLOPs and memory from shapes alone.

Nothing is allocated and no data is read: ``jax.eval_shape`` gives the
parameter and optimizer-state shapes, XLA's cost analysis of the compiled
forward pass gives its floating-point operations, and the mesh's sharding
rule gives the bytes each device holds.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from clu import parameter_overview

from jaxclf.hardware import Hardware
from jaxclf.train_state import TrainState, abstract_variables


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


def describe_model(model: nn.Module, image_shape: tuple[int, ...]) -> dict[str, Any]:
    """The parameter table (clu), the parameter count and the forward FLOPs per image."""
    variables = abstract_variables(model, image_shape)
    params = variables["params"]
    return {
        "overview": parameter_overview.get_parameter_overview(params, include_stats=False),
        "num_params": sum(int(leaf.size) for leaf in jax.tree.leaves(params)),
        "flops_per_image": forward_flops(model, variables, tuple(image_shape)),
    }


def bytes_per_device(abstract_state: TrainState, hardware: Hardware) -> dict[str, int]:
    """Bytes of the parameters and of the optimizer state on each device of ``hardware``'s mesh."""
    return {
        "params": hardware.bytes_per_device(abstract_state.params),
        "optimizer_state": hardware.bytes_per_device(abstract_state.opt_state),
    }


def format_description(name: str, image_shape: tuple[int, ...], description: dict[str, Any]) -> str:
    return "\n".join(
        [
            description["overview"],
            f"{name}: {description['num_params']:,} parameters; "
            f"{description['flops_per_image'] / 1e9:.3f} GFLOPs per {'x'.join(map(str, image_shape))} image (forward)",
        ]
    )


def format_memory(memory: dict[str, int], mesh_shape: dict[str, int]) -> str:
    mesh = " x ".join(f"{axis}={size}" for axis, size in mesh_shape.items())
    return (
        f"per device on the mesh {mesh}: parameters {memory['params'] / 2**20:,.1f} MiB, "
        f"optimizer state {memory['optimizer_state'] / 2**20:,.1f} MiB"
    )
