"""The config schema, one source of truth, registered with Hydra.

- ``data``, ``hardware``, ``trainer`` and ``evaluation`` are typed by the
  dataclasses their consumers take (``DataConfig``, ``HardwareConfig``,
  ``TrainerConfig``, ``EvaluationConfig``); their YAML options state only
  what differs from those defaults.
- ``model``, ``loss`` and ``optim`` choose a ``_target_``. A built-in option
  extends a schema generated from its target's signature (hydra-zen
  ``builds``, written by ``tools/write_schemas.py`` into
  ``jaxclf.config.schemas``, so that none of this imports JAX), registered
  under a name that is no group's option::

      defaults: [/schema_vit@_here_, _self_]

  so an unknown key, a wrong type or a closed choice outside its Enum fails
  when Hydra composes the config. A user's own target needs no schema.
- The keys a resumed run may change are the schema's ``resumable`` fields.

``jaxclf.config.validation`` checks what one key's type cannot say.
"""

from __future__ import annotations

import dataclasses
import enum
import os
import re
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING, DictConfig, OmegaConf

from jaxclf.config.choices import ComputeDtype, NonFinitePolicy, Platform, SplitName
from jaxclf.config.resumable import resumable, resumable_keys
from jaxclf.config.schemas import SCHEMAS
from jaxclf.data.augment import Augmenter
from jaxclf.data.folder_layout import class_names
from jaxclf.errors import ConfigError

# --- data ---------------------------------------------------------------------


@dataclasses.dataclass
class SplitsConfig:
    """TFDS split names (or split expressions) for each role."""

    train: str = "train"
    validation: Optional[str] = "validation"  # None: hold out data.validation_holdout examples of train
    test: str = "test"


@dataclasses.dataclass
class SyntheticExamplesConfig:
    train: int = 1024
    validation: int = 128
    test: int = 128


@dataclasses.dataclass
class DataConfig:
    name: str = MISSING  # TFDS dataset name, "synthetic" (random images and labels) or "folder" (data.path)
    # data=folder: a folder of images, one sub-folder per class (jaxclf.data.image_folder), and the
    # fraction of each class held out for validation and for test when it has no train/ validation/ test/.
    path: Optional[str] = None
    folder_holdout: float = 0.1
    # Module to import so that a builder outside the TFDS catalog registers.
    builder_module: Optional[str] = None
    data_dir: Optional[str] = resumable(None)  # None: TFDS's default (~/tensorflow_datasets)
    manual_dir: Optional[str] = resumable(None)  # downloaded archives, for datasets TFDS cannot fetch (ImageNet)
    num_classes: int = MISSING
    image_shape: list[int] = MISSING  # [height, width, channels]
    # Per-channel normalisation applied to raw pixel values: (x - mean) / std.
    mean: list[float] = MISSING
    std: list[float] = MISSING
    batch_size: int = 128  # global batch size, over all devices and hosts
    eval_batch_size: Optional[int] = resumable(None)  # None: same as batch_size
    splits: SplitsConfig = dataclasses.field(default_factory=SplitsConfig)
    validation_holdout: int = 0  # examples of train held out as validation (fixed seed), with splits.validation=null
    train_examples: Optional[int] = None  # train on a seeded subset of this many examples
    subset_seed: int = II("seed")
    # True: decode the splits once into host memory. False: keep images encoded, decode per batch.
    in_memory: bool = True
    augment: Augmenter = dataclasses.field(default_factory=Augmenter)  # training only
    prefetch: int = resumable(2)  # training batches prepared ahead, in units of one jitted call
    workers: int = resumable(4)  # host threads reading, decoding and augmenting batches
    synthetic_examples: SyntheticExamplesConfig = dataclasses.field(default_factory=SyntheticExamplesConfig)


# --- trainer ------------------------------------------------------------------


@dataclasses.dataclass
class TrainerConfig:
    """The loop's settings (``trainer`` in the config)."""

    max_steps: int = resumable(300)
    # Training steps fused into one jitted call (lax.scan); calls never cross
    # a callback's period (logging, evaluation, checkpoints). null: chosen by
    # the step's cost (fused_steps_per_call).
    steps_per_call: Optional[int] = resumable(None)
    # Each step's batch is split into this many micro-batches whose gradients
    # are averaged before the one update (lax.scan): a big batch in small
    # memory. Like the mesh, it may change on resume (e.g. onto fewer devices).
    accumulate_steps: int = resumable(1)
    resume: bool = resumable(True)  # continue from the checkpoints in the run directory
    # A NaN or Inf in the loss or gradients: the update is never applied; then
    # stop the run or carry on.
    on_nonfinite: NonFinitePolicy = NonFinitePolicy.stop
    # With on_nonfinite=skip: stop once more than this fraction of the updates so far were skipped
    # (checked where a callback is due: the loop does not wait for the device between calls).
    max_skipped_fraction: float = resumable(0.1)
    # Stop after this much wall time of training, with a checkpoint, then test
    # (seconds, or [[DD:]HH:]MM:SS); the same command continues the run.
    max_time: Optional[str] = resumable(None)
    # Keep an exponential moving average of the weights (e.g. 0.999; its
    # decay warms up as min(ema_decay, (1 + step) / (10 + step))), which
    # every evaluation and prediction then uses. null: off.
    ema_decay: Optional[float] = None


_CLOCK = re.compile(r"(?:(?:(\d+):)?(\d+):)?(\d+):(\d+(?:\.\d*)?)")  # [[DD:]HH:]MM:SS


def parse_duration(value: str | float) -> float:
    """Seconds in ``value``: a number of seconds, or ``[[DD:]HH:]MM:SS`` (``00:12:00:00`` is 12 hours)."""
    text = str(value).strip()
    clock = _CLOCK.fullmatch(text)
    try:
        if clock:
            days, hours, minutes, seconds = (float(part or 0) for part in clock.groups())
            seconds += 60 * (minutes + 60 * (hours + 24 * days))
        else:
            seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(
            f"trainer.max_time={value} is not valid; give a positive number of seconds or [[DD:]HH:]MM:SS "
            "(e.g. trainer.max_time=00:30:00 for half an hour)"
        )
    return seconds


# --- hardware -----------------------------------------------------------------


# JAX's persistent compilation cache, under the user's cache directory.
DEFAULT_COMPILATION_CACHE = os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "jaxclf", "jax")


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


# --- evaluation and predict ---------------------------------------------------


def _final_splits() -> list[SplitName]:
    return [SplitName.validation, SplitName.test, SplitName.train]


@dataclasses.dataclass
class EvaluationConfig:
    """The final evaluation, after training (``evaluation`` in the config; all of it may change on resume)."""

    splits: list[SplitName] = resumable(default_factory=_final_splits)
    # The train split is scored without augmentation on its first this many
    # examples (0 leaves it out): the overfitting gap in summary.json.
    train_examples: int = resumable(10000)
    # Every evaluation, during training and after, scores only the first this
    # many examples of each split (null: all of them; debug=limit_batches).
    max_examples: Optional[int] = resumable(None)
    # Top-5 accuracy is reported only with more classes than this (with 10,
    # it is about 1.0 and says nothing).
    top5_min_classes: int = resumable(10)
    # mode=evaluate: the run to re-test (null: this run directory). It is only
    # read, so a finished run on read-only storage can be evaluated from elsewhere.
    run_dir: str | None = resumable(None)
    # A run's stored config rebuilds only jaxclf's own models, optimizers and
    # datasets, from plain values (jaxclf.config.stored); true rebuilds
    # whatever the run names (evaluation.run_dir, loss.teacher): trusted code.
    trust_run_config: bool = resumable(False)


@dataclasses.dataclass
class PredictConfig:
    """``predict`` in the config (all of it may change on resume)."""

    # Image files, folders of images, or split names; one value or a list.
    inputs: Any = resumable("test")
    top_k: int = resumable(5)  # classes listed per image, most probable first


# --- the whole config ---------------------------------------------------------


class Mode(enum.Enum):
    fit = "fit"  # train, then evaluate the final model on validation and test
    evaluate = "evaluate"  # restore the run's latest checkpoint and evaluate it
    describe = "describe"  # print the model's parameters and FLOPs from shapes alone
    predict = "predict"  # write the latest checkpoint's predictions for predict.inputs to predictions.csv


@dataclasses.dataclass
class Config:
    model: Any = MISSING
    loss: Any = MISSING
    data: DataConfig = MISSING
    hardware: HardwareConfig = dataclasses.field(default_factory=HardwareConfig)
    optim: Any = MISSING
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    evaluation: EvaluationConfig = resumable(default_factory=EvaluationConfig)
    predict: PredictConfig = resumable(default_factory=PredictConfig)
    callbacks: dict[str, Any] = resumable(default_factory=dict)  # name -> {_target_: ..., **kwargs}
    seed: int = 0
    mode: Mode = resumable(Mode.fit)


def resumable_keys_of(cfg: DictConfig) -> frozenset[str]:
    """The keys a resumed run of ``cfg`` may change: the schema's ``resumable``
    fields, including those of the chosen model, loss and optimizer schemas."""
    keys = set(resumable_keys(Config))
    for group in ("model", "loss", "optim"):
        schema = OmegaConf.get_type(cfg, group)  # an option's generated schema; dict for a user's own target
        if isinstance(schema, type) and dataclasses.is_dataclass(schema):
            keys |= resumable_keys(schema, f"{group}.")
    return frozenset(keys)


def register_configs() -> None:
    """Registers the schema with Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    store.store(name="base_config", node=Config)
    for name, node in SCHEMAS.items():
        store.store(name=name, node=node)


def _mode_name(mode: Any) -> str:
    return str(mode).rsplit(".", 1)[-1]  # resolvers see "Mode.fit"


def output_subdir(mode: Any) -> str | None:
    """Where Hydra keeps a job's resolved config: ``.hydra`` for ``fit``, so that
    ``mode=evaluate`` in the same run directory leaves the run's config intact;
    nowhere for ``describe``, which only prints."""
    name = _mode_name(mode)
    if name == Mode.describe.value:
        return None
    return ".hydra" if name == Mode.fit.value else f".hydra-{name}"


def log_file(mode: Any, path: str) -> str:
    """Where a job's log goes: ``path``, except for ``describe`` (it writes no files)."""
    return os.devnull if _mode_name(mode) == Mode.describe.value else path


def job_dirname(overrides: Any, excluded: Any, _root_: DictConfig) -> str:
    """A multirun job's folder name: its command-line ``overrides``, sorted,
    less ``excluded`` keys and the keys a resumed run may change (so a sweep
    relaunched with more steps finds its jobs' folders)."""
    resumable = resumable_keys_of(_root_)
    kept = []
    for override in overrides:
        key = str(override).split("=", 1)[0].lstrip("+~")
        if key in excluded or any(key == name or key.startswith(f"{name}.") for name in resumable):
            continue
        kept.append(str(override))
    return ",".join(sorted(kept))


register_configs()
if not OmegaConf.has_resolver("jaxclf_output_subdir"):
    OmegaConf.register_new_resolver("jaxclf_output_subdir", output_subdir)
if not OmegaConf.has_resolver("jaxclf_log_file"):
    OmegaConf.register_new_resolver("jaxclf_log_file", log_file)
if not OmegaConf.has_resolver("jaxclf_job_dirname"):
    OmegaConf.register_new_resolver("jaxclf_job_dirname", job_dirname)
if not OmegaConf.has_resolver("jaxclf_folder_classes"):  # data=folder's num_classes: its class folders
    OmegaConf.register_new_resolver("jaxclf_folder_classes", lambda path: len(class_names(path)) if path else 0)
