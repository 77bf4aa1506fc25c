"""Devices, the data-parallel mesh, and process setup.

One code path serves a laptop CPU and a TPU pod: a ``Mesh`` with a named
``data`` axis over every device, even when there is only one; a single
process is just the one-host case of ``jax.distributed``.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxclf.errors import ConfigError

DATA_AXIS = "data"
PLATFORMS = ("cpu", "gpu", "tpu")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


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


def setup(platform: str, compute_dtype: str, distributed: bool) -> Hardware:
    """Selects the platform, joins the other hosts, and builds the ``data`` mesh.

    Must run before anything else touches a JAX backend.
    """
    if platform not in PLATFORMS:
        raise ConfigError(f"hardware.platform={platform!r} is not valid; choose one of {', '.join(PLATFORMS)}")
    if compute_dtype not in COMPUTE_DTYPES:
        raise ConfigError(
            f"hardware.compute_dtype={compute_dtype!r} is not valid; choose one of {', '.join(COMPUTE_DTYPES)}"
        )
    jax.config.update("jax_platforms", platform)
    if distributed and not jax.distributed.is_initialized():  # once per process, even in a multirun
        jax.distributed.initialize()
    try:
        devices = jax.devices(platform)  # by name: a backend started earlier in this process may be another one
    except RuntimeError:
        raise ConfigError(
            f"hardware.platform={platform!r}: JAX finds no {platform} devices on this machine "
            f"(is a jax build for {platform} installed?); use hardware=cpu here"
        ) from None
    return Hardware(mesh=Mesh(np.asarray(devices), (DATA_AXIS,)))


def hide_accelerators_from_tensorflow() -> None:
    """TensorFlow (imported by TFDS and CLU's writers) must not take GPU/TPU memory."""
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")
