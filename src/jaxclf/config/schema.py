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
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from jaxclf.config.data import DataConfig
from jaxclf.config.evaluation import EvaluationConfig, PredictConfig
from jaxclf.config.hardware import HardwareConfig
from jaxclf.config.resumable import resumable, resumable_keys
from jaxclf.config.schemas import SCHEMAS
from jaxclf.config.trainer import TrainerConfig
from jaxclf.data.folder_layout import class_names


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
