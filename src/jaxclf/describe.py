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
from clu import parameter_overview
from omegaconf import DictConfig

from jaxclf.build import instantiate, setup_hardware
from jaxclf.hardware import Hardware
from jaxclf.steps_per_call import forward_flops
from jaxclf.train_state import TrainState, abstract_train_state, abstract_variables


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


def describe(cfg: DictConfig) -> dict[str, Any]:
    """Prints the model's parameter overview, parameter count, forward FLOPs
    per image, and the bytes of parameters and optimizer state per device on
    the configured mesh."""
    image_shape = tuple(cfg.data.image_shape)
    hardware = setup_hardware(cfg)
    model, optimizer = instantiate(cfg.model, "model"), instantiate(cfg.optim, "optim")
    description = describe_model(model, image_shape)
    memory = bytes_per_device(abstract_train_state(model, optimizer, image_shape), hardware)
    print(format_description(cfg.model._target_.rsplit(".", 1)[-1], image_shape, description), flush=True)
    print(format_memory(memory, dict(hardware.mesh.shape)), flush=True)
    return {
        "num_params": description["num_params"],
        "flops_per_image": description["flops_per_image"],
        "bytes_per_device": memory,
    }
