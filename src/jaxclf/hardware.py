"""Devices, processes, the ``(data, fsdp)`` mesh, and where arrays live on it.

One code path serves a laptop CPU and a TPU pod: a ``Mesh`` with named
``data`` and ``fsdp`` axes over every device of every process, even when there
is only one; a single process is just the one-host case of ``jax.distributed``.
Batches are split over both axes. Parameters and optimizer state are sharded
over ``fsdp`` by a size rule (``fsdp_partition``) and replicated over ``data``:
the model and the step never change, only the shardings do.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import Any

import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from jaxclf import peers
from jaxclf.compilation_cache import use_compilation_cache
from jaxclf.config.choices import Platform
from jaxclf.config.schema import HardwareConfig, MeshConfig
from jaxclf.errors import ConfigError
from jaxclf.host_memory import keep_freed_memory

logger = logging.getLogger(__name__)

DATA_AXIS = "data"
FSDP_AXIS = "fsdp"
BATCH_AXES = (DATA_AXIS, FSDP_AXIS)  # a batch is split over every device


def fsdp_partition(shape: Sequence[int], fsdp: int, min_size: int) -> PartitionSpec:
    """Where a tensor of ``shape`` lives: its largest dimension divisible by
    ``fsdp`` is split over the ``fsdp`` axis (the first such, on ties), unless
    the tensor has fewer than ``min_size`` elements or no such dimension; then
    it is replicated."""
    if fsdp == 1 or math.prod(shape) < min_size:
        return PartitionSpec()
    divisible = [dim for dim, size in enumerate(shape) if size % fsdp == 0]
    if not divisible:
        return PartitionSpec()
    split = max(divisible, key=lambda dim: (shape[dim], -dim))
    return PartitionSpec(*[FSDP_AXIS if dim == split else None for dim in range(len(shape))])


@dataclasses.dataclass(frozen=True)
class Hardware:
    """The mesh a run computes on and the shardings derived from it."""

    mesh: Mesh
    fsdp_min_size: int = MeshConfig.fsdp_min_size

    @property
    def num_devices(self) -> int:
        return self.mesh.size

    @property
    def fsdp(self) -> int:
        return self.mesh.shape[FSDP_AXIS]

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, PartitionSpec())

    def batch_sharding(self, leading_axes: int = 0) -> NamedSharding:
        """Splits an array's batch dimension (after ``leading_axes``) over every device."""
        return NamedSharding(self.mesh, PartitionSpec(*([None] * leading_axes), BATCH_AXES))

    def state_shardings(self, tree: Any) -> Any:
        """A sharding for each array of ``tree`` (shapes suffice): ``fsdp_partition``'s."""
        return jax.tree.map(
            lambda leaf: NamedSharding(self.mesh, fsdp_partition(leaf.shape, self.fsdp, self.fsdp_min_size)), tree
        )

    def placed(self, abstract: Any) -> Any:
        """``abstract`` (ShapeDtypeStructs) carrying the state shardings: a restore target."""
        shardings = self.state_shardings(abstract)
        return jax.tree.map(
            lambda leaf, sharding: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding), abstract, shardings
        )

    def bytes_per_device(self, tree: Any) -> int:
        """The bytes of ``tree``'s arrays that each device holds under ``state_shardings`` (every shard is equal)."""
        shardings = self.state_shardings(tree)
        return sum(
            math.prod(sharding.shard_shape(leaf.shape)) * leaf.dtype.itemsize
            for leaf, sharding in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings), strict=True)
        )


def make_mesh(devices: Sequence[Any], fsdp: int) -> Mesh:
    """A ``(data, fsdp)`` mesh over ``devices``; JAX orders them by the interconnect."""
    if fsdp < 1 or len(devices) % fsdp:
        raise ConfigError(
            f"hardware.mesh.fsdp={fsdp} is not valid; it must be a positive divisor of the "
            f"device count ({len(devices)})"
        )
    return jax.make_mesh(
        (len(devices) // fsdp, fsdp), BATCH_AXES, axis_types=(AxisType.Auto, AxisType.Auto), devices=devices
    )


def setup(config: HardwareConfig) -> Hardware:
    """Selects the platform, joins the other processes, and builds the mesh.

    Must run before anything else touches a JAX backend."""
    platform = Platform(config.platform).value
    if platform != Platform.gpu.value:
        # Not for "gpu": jax_platforms expands it to CUDA and ROCm, and a JAX with only
        # one of them installed then refuses to start; jax.devices("gpu") finds either.
        jax.config.update("jax_platforms", platform)
    if config.compilation_cache_dir is not None:
        use_compilation_cache(config.compilation_cache_dir)
    if config.keep_host_memory:
        keep_freed_memory()
    if config.cpu_devices is not None:
        _set_cpu_devices(config.cpu_devices)
    if config.joins_processes:
        _join_processes(config)
    elif config.local_devices is not None and platform == Platform.gpu.value:
        # The other GPUs are never opened: no memory taken on them.
        jax.config.update("jax_cuda_visible_devices", ",".join(map(str, range(config.local_devices))))
    devices = _devices(platform, config.local_devices)
    return Hardware(make_mesh(devices, config.mesh.fsdp), config.mesh.fsdp_min_size)


def _devices(platform: str, per_process: int | None) -> list[Any]:
    """Every process's first ``per_process`` devices of ``platform`` (all of them if None)."""
    try:
        devices = jax.devices(platform)  # by name: a backend started earlier in this process may be another one
    except RuntimeError:
        raise ConfigError(
            f"hardware.platform={platform!r}: JAX finds no {platform} devices on this machine "
            f"(is a jax build for {platform} installed?); use hardware=cpu here"
        ) from None
    if per_process is None:
        return devices
    local = jax.local_device_count(platform)
    if per_process > local:
        raise ConfigError(
            f"hardware.local_devices={per_process} is not valid; this process has {local} {platform} devices"
        )
    return first_devices_of_each_process(devices, per_process)


def first_devices_of_each_process(devices: Sequence[Any], count: int) -> list[Any]:
    """The first ``count`` of each process's ``devices``, in their order."""
    by_process: dict[int, list[Any]] = {}
    for device in devices:
        by_process.setdefault(device.process_index, []).append(device)
    return [device for process_devices in by_process.values() for device in process_devices[:count]]


def _set_cpu_devices(count: int) -> None:
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:  # the backend has started (a multirun's later job): fine if it has as many
        if jax.local_device_count("cpu") == count:
            return
        raise ConfigError(
            f"hardware.cpu_devices={count}: JAX already started in this process with "
            f"{jax.local_device_count('cpu')} CPU devices; start a new process to change it"
        ) from None


def _join_processes(config: HardwareConfig) -> None:
    """``jax.distributed.initialize`` once per process (a multirun's later jobs
    reuse it), ended with one line if the others do not join within
    ``hardware.distributed_timeout`` (JAX's own timeout aborts with a C++ trace)."""
    if jax.distributed.is_initialized():
        return
    if config.process_id == 0 and config.coordinator_address is not None:
        peers.check_port_free(config.coordinator_address)
    try:
        with peers.deadline(config.distributed_timeout, _not_joined(config)):
            jax.distributed.initialize(
                config.coordinator_address,
                config.num_processes,
                config.process_id,
                initialization_timeout=2 * config.distributed_timeout,  # a backstop: the deadline comes first
                heartbeat_timeout_seconds=config.distributed_timeout,  # a backstop: jaxclf.peers notices at half
                shutdown_timeout_seconds=config.distributed_timeout,
            )
    except (RuntimeError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0]
        raise ConfigError(
            f"hardware.distributed: jax.distributed.initialize() failed ({first_line}); on a cluster JAX does not "
            "detect (TPU pods and SLURM are detected), set hardware.coordinator_address, hardware.num_processes "
            "and hardware.process_id"
        ) from None
    logger.info("Process %d of %d; %d devices in all", jax.process_index(), jax.process_count(), jax.device_count())


def _not_joined(config: HardwareConfig) -> str:
    where = config.coordinator_address or "the detected coordinator"
    return (
        f"hardware.distributed_timeout={config.distributed_timeout}: the run's processes did not all join at {where} "
        f"within {config.distributed_timeout} s (hardware.num_processes={config.num_processes}); start every "
        "process with the same hardware.coordinator_address and hardware.num_processes, each with its own "
        "hardware.process_id"
    )
