"""Devices, the data-parallel mesh, and process setup.

One code path serves a laptop CPU and a TPU pod: a ``Mesh`` with a named
``data`` axis over every device, even when there is only one; a single
process is just the one-host case of ``jax.distributed``.
"""

from __future__ import annotations

import dataclasses
import enum

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxclf.errors import ConfigError
from jaxclf.resumable import resumable

DATA_AXIS = "data"


class Platform(str, enum.Enum):
    cpu = "cpu"
    gpu = "gpu"
    tpu = "tpu"


class ComputeDtype(str, enum.Enum):
    """The dtype of activations; parameters stay float32."""

    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


@dataclasses.dataclass
class HardwareConfig:
    platform: Platform = resumable(Platform.cpu)
    compute_dtype: ComputeDtype = ComputeDtype.float32
    distributed: bool = resumable(False)  # call jax.distributed.initialize() (multi-host)


@dataclasses.dataclass(frozen=True)
class Hardware:
    """The mesh a run computes on and the shardings derived from it."""

    mesh: Mesh

    @property
    def num_devices(self) -> int:
        return self.mesh.size

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def batch_sharding(self, leading_axes: int = 0) -> NamedSharding:
        """Shards an array's batch dimension (after ``leading_axes``) over ``data``."""
        return NamedSharding(self.mesh, PartitionSpec(*([None] * leading_axes), DATA_AXIS))


def setup(config: HardwareConfig) -> Hardware:
    """Selects the platform, joins the other hosts, and builds the ``data`` mesh.

    Must run before anything else touches a JAX backend.
    """
    platform = Platform(config.platform).value
    jax.config.update("jax_platforms", platform)
    if config.distributed and not jax.distributed.is_initialized():  # once per process, even in a multirun
        jax.distributed.initialize()
    try:
        devices = jax.devices(platform)  # by name: a backend started earlier in this process may be another one
    except RuntimeError:
        raise ConfigError(
            f"hardware.platform={platform!r}: JAX finds no {platform} devices on this machine "
            f"(is a jax build for {platform} installed?); use hardware=cpu here"
        ) from None
    if platform != Platform.cpu.value:
        hide_accelerators_from_tensorflow()
    return Hardware(mesh=Mesh(np.asarray(devices), (DATA_AXIS,)))


def hide_accelerators_from_tensorflow() -> None:
    """TensorFlow (imported by TFDS and CLU's writers) must not take GPU/TPU memory."""
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")
