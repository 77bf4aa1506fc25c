"""The hardware's settings (``hardware`` in the config): plain data, cheap to
import, so a bad value is reported before JAX's libraries load."""

from __future__ import annotations

import dataclasses
import enum
import os

from jaxclf.config.resumable import resumable

# JAX's persistent compilation cache, under the user's cache directory.
DEFAULT_COMPILATION_CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "jaxclf", "jax")


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
class MeshConfig:
    """The device mesh (``hardware.mesh``): ``fsdp`` devices share each large
    tensor; ``data`` = all devices / ``fsdp`` hold replicas. A checkpoint
    resumes on any mesh, so both may change on resume."""

    fsdp: int = resumable(1)
    # Tensors with fewer elements than this stay replicated (sharding them
    # costs more communication than the memory it saves).
    fsdp_min_size: int = resumable(2**16)


@dataclasses.dataclass
class HardwareConfig:
    platform: Platform = resumable(Platform.cpu)
    compute_dtype: ComputeDtype = ComputeDtype.float32
    mesh: MeshConfig = dataclasses.field(default_factory=MeshConfig)
    # Join the other processes with jax.distributed.initialize(): true on
    # TPU pods and SLURM, which JAX detects; set the three keys below
    # elsewhere (null: detected).
    distributed: bool = resumable(False)
    coordinator_address: str | None = resumable(None)  # host:port of process 0
    num_processes: int | None = resumable(None)
    process_id: int | None = resumable(None)
    # Seconds a process waits for the others to join, or a run's processes
    # wait for a silent one, before every process stops with one line
    # (jaxclf.peers; JAX's own initialization and heartbeat timeouts).
    distributed_timeout: int = resumable(60)
    cpu_devices: int | None = resumable(None)  # virtual CPU devices per process (hardware.platform=cpu)
    local_devices: int | None = resumable(None)  # the first N devices of each process (null: every one)
    # JAX's persistent compilation cache: a later launch of the same programs
    # loads them instead of compiling (null: off).
    compilation_cache_dir: str | None = resumable(DEFAULT_COMPILATION_CACHE)
    # Memory a step frees stays in the process for the next step, instead of
    # going back to the kernel and being mapped and zeroed again every step
    # (glibc's malloc; see jaxclf.host_memory). false: glibc's defaults.
    keep_host_memory: bool = resumable(True)

    @property
    def joins_processes(self) -> bool:
        return self.distributed or self.num_processes is not None or self.coordinator_address is not None
