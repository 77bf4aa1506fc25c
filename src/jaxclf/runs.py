"""The run directory: what a jaxclf run leaves behind, and reading it back.

One run, one directory::

    summary.json           final metrics (mode=fit)
    evaluation.json        a re-test of the latest checkpoint (mode=evaluate)
    failure.json           why a multirun job failed
    checkpoints/<step>/    orbax: the train state and meta (config, callback state)
    corrupt_checkpoints/   checkpoints that did not read back, set aside
    events.out.tfevents.*  TensorBoard

This module owns those names, the run's config (what may change on resume),
and restoring a trained model from a run (for ``mode=evaluate`` and
distillation teachers).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import traceback
from collections.abc import Mapping
from typing import Any, cast

import flax.linen as nn
import jax
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from jaxclf import run_lock, stored_config
from jaxclf.atomic_file import replaced_atomically
from jaxclf.checkpointing import CheckpointStore, Retention
from jaxclf.errors import ConfigError
from jaxclf.hardware import Hardware, make_mesh
from jaxclf.objectives import Teacher
from jaxclf.train_state import abstract_train_state

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
QUARANTINE_DIR = "corrupt_checkpoints"
SUMMARY_FILE = "summary.json"
EVALUATION_FILE = "evaluation.json"
FAILURE_FILE = "failure.json"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A run's resolved config (plain containers) and the dotted keys a
    resumed run may change (with everything under them)."""

    values: Mapping[str, Any]
    resumable: frozenset[str] = frozenset()
    overrides: tuple[str, ...] = ()  # the command line's, as Hydra gives them: "labels=mixup", "seed=1"

    def differences(self, saved: Mapping[str, Any]) -> list[str]:
        """Keys whose values differ from ``saved``'s, except resumable ones:
        ``["optim.learning_rate: 0.003 -> 0.01", ...]``."""
        saved_flat, current_flat = flatten(saved), flatten(self.values)
        differences = []
        for key in sorted(set(saved_flat) | set(current_flat)):
            if any(key == resumable or key.startswith(f"{resumable}.") for resumable in self.resumable):
                continue
            before, after = saved_flat.get(key, "<absent>"), current_flat.get(key, "<absent>")
            if before != after:
                differences.append(f"{key}: {before!r} -> {after!r}")
        return differences

    def hparams(self) -> dict[str, Any]:
        """The config as scalars, for TensorBoard's HParams tab and ``summary.json``:
        ``{"optim.learning_rate": 0.003, "model.hidden_sizes": "[256, 256]", ...}``
        (callbacks are tooling, not hyperparameters: left out)."""
        flat = flatten({key: value for key, value in self.values.items() if key != "callbacks"})
        return {key: value if isinstance(value, (bool, int, float, str)) else str(value) for key, value in flat.items()}

    def chosen_hparams(self) -> dict[str, Any]:
        """What the command line chose (a group's option, or a key's resolved
        value) and the seed: the hyperparameters that tell runs apart in
        TensorBoard's HParams tab. Tooling and locations are left out."""
        flat = self.hparams()
        chosen = {}
        for override in self.overrides:
            key, _, value = override.lstrip("+~").partition("=")
            if not key.startswith(NOT_HYPERPARAMETERS) and key not in NOT_HYPERPARAMETERS:
                chosen[key] = flat.get(key, value)
        chosen.setdefault("seed", flat.get("seed", 0))
        return chosen

    @property
    def name(self) -> str:
        """The command line's overrides, or "defaults"."""
        return " ".join(self.overrides) or "defaults"


# Overrides that choose where and how a run is kept and shown, not what it learns.
NOT_HYPERPARAMETERS = (
    "hydra.",
    "callbacks",
    "mode",
    "data.data_dir",
    "data.manual_dir",
    "loss.teacher",
    "evaluation.run_dir",
    "hardware.compilation_cache_dir",
    "hardware.keep_host_memory",
)


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name))
        else:
            flat[name] = value
    return flat


def checkpoint_store(run_dir: str, retention: Retention = Retention(), read_only: bool = False) -> CheckpointStore:
    """The run's ``checkpoints/``, setting unreadable ones aside in ``corrupt_checkpoints/``."""
    return CheckpointStore(
        os.path.join(run_dir, CHECKPOINT_DIR), retention, os.path.join(run_dir, QUARANTINE_DIR), read_only=read_only
    )


def check_writable(run_dir: str) -> None:
    """Raises a ``ConfigError`` unless the run directory and its ``checkpoints/``
    (where they exist) are directories this process can write: checked before
    training, as a save that fails late would cost the run."""
    run_lock.check_writable(run_dir, os.path.join(run_dir, CHECKPOINT_DIR))


def read_config(run_dir: str, trust: bool = False) -> dict[str, Any]:
    """The resolved config saved in the latest checkpoint of the run in
    ``run_dir``, refused unless its model, optimizer and data are jaxclf's own
    with plain values (``jaxclf.stored_config``) or ``trust``."""
    if not os.path.isdir(os.path.join(run_dir, CHECKPOINT_DIR)):
        raise ConfigError(f"{run_dir} is not a jaxclf run directory (it has no {CHECKPOINT_DIR}/)")
    store = checkpoint_store(run_dir, read_only=True)
    try:
        if store.latest_step() is None:
            raise ConfigError(f"{run_dir} holds no checkpoint; train first (mode=fit)")
        latest = store.latest_good_meta()
        if latest is None:
            raise ConfigError(f"no checkpoint in {run_dir} reads back; the run cannot be restored (train it again)")
        return dict(stored_config.checked(latest[1]["config"], run_dir, trust))
    finally:
        store.close()


def restore_state(run_dir: str, abstract_state: Any) -> Any:
    """The state of the latest readable checkpoint in ``run_dir``, into
    ``abstract_state``'s structure and shardings; the run is only read."""
    store = checkpoint_store(run_dir, read_only=True)
    try:
        if store.latest_step() is None:
            raise ConfigError(f"{run_dir} holds no checkpoint; train first (mode=fit)")
        restored = store.restore_latest_good(abstract_state)
        if restored is None:
            raise ConfigError(f"no checkpoint in {run_dir} reads back; the run cannot be restored (train it again)")
        return restored[0]
    finally:
        store.close()


def restore_model(
    run_dir: str, hardware: Hardware | None = None, trust: bool = False
) -> tuple[nn.Module, dict[str, Any], DictConfig]:
    """The model of the latest checkpoint in ``run_dir`` as it is evaluated
    (its weights' moving average, where it keeps one): ``(module, variables, run config)``,
    on ``hardware``'s mesh (default: the first device), whatever mesh saved it.

    The config saved with it rebuilds the module and optimizer (the
    checkpoint holds both states), if ``read_config`` accepts it with
    ``trust``; nothing is written."""
    cfg = OmegaConf.create(read_config(run_dir, trust))
    model = instantiate(cfg.model)
    hardware = hardware or Hardware(make_mesh(jax.devices()[:1], fsdp=1))
    ema_decay = cfg.get("trainer", {}).get("ema_decay")
    abstract = abstract_train_state(model, instantiate(cfg.optim), tuple(cfg.data.image_shape), ema_decay)
    state = restore_state(run_dir, hardware.placed(abstract))
    return model, {"params": state.evaluated_params, **state.model_state}, cfg


def load_teacher(
    run_dir: str | None, data: Mapping[str, Any], hardware: Hardware | None = None, trust: bool = False
) -> Teacher:
    """The finished run in ``run_dir`` as a distillation teacher on
    ``hardware``'s mesh, if it was trained on the data described by ``data``
    (the student's ``data`` config): the same dataset, classes, image shape
    and normalisation."""
    if not run_dir or not os.path.isdir(run_dir):
        raise ConfigError(
            f"loss.teacher={run_dir!r} is not a run directory; give the directory of a finished jaxclf run"
        )
    model, variables, teacher_cfg = restore_model(run_dir, hardware, trust)
    saved = cast(dict[str, Any], OmegaConf.to_container(teacher_cfg.data))
    for key in ("name", "num_classes", "image_shape", "mean", "std"):
        theirs, ours = saved[key], _plain(data[key])
        if theirs != ours:
            raise ConfigError(
                f"loss.teacher={run_dir!r} was trained with data.{key}={theirs}; this run has data.{key}={ours} "
                "(a teacher must see the student's dataset, classes, image shape and normalisation)"
            )
    return Teacher(apply_fn=model.apply, variables=variables)


def _plain(value: Any) -> Any:
    return OmegaConf.to_object(value) if OmegaConf.is_config(value) else value


def read_temperature(run_dir: str) -> float:
    """The softmax temperature the run in ``run_dir`` fitted (``summary.json``),
    or 1 where it fitted none; a ``ConfigError`` when the stored value is not
    in (0, inf): dividing by it would invert or flatten every prediction."""
    path = os.path.join(run_dir, SUMMARY_FILE)
    fitted = (read_json(path) or {}).get("temperature")
    if fitted is None:
        return 1.0
    if isinstance(fitted, bool) or not isinstance(fitted, (int, float)) or not 0 < fitted < math.inf:
        raise ConfigError(
            f"{path}: temperature={fitted!r} is not valid; a fitted temperature lies in (0, inf) "
            "(remove the key to predict without temperature scaling)"
        )
    return float(fitted)


def read_json(path: str) -> dict[str, Any] | None:
    """A JSON file's content, or None when it does not exist or is damaged
    (a truncated write; a warning names it)."""
    if not os.path.exists(path):
        return None
    try:
        with open(path) as file:
            return json.load(file)
    except (ValueError, UnicodeDecodeError) as error:
        logger.warning("%s is damaged (%s); treating it as absent", path, error)
        return None


def write_json_atomically(path: str, payload: Any) -> None:
    """Writes strict JSON to a temporary file, then renames: readers never see half a file."""
    with replaced_atomically(path) as file:
        json.dump(payload, file, indent=2, allow_nan=False)
        file.write("\n")


def without_non_finite(payload: Any, prefix: str = "") -> tuple[Any, list[str]]:
    """``payload`` with each NaN or infinite number replaced by None (JSON
    ``null``), and the dotted keys where that happened."""
    if isinstance(payload, float) and not math.isfinite(payload):
        return None, [prefix]
    if isinstance(payload, dict):
        cleaned, replaced = {}, []
        for key, value in payload.items():
            cleaned[key], found = without_non_finite(value, f"{prefix}.{key}" if prefix else str(key))
            replaced += found
        return cleaned, replaced
    return payload, []


def is_primary_process() -> bool:
    """Whether this process writes the run's files: only process 0 does
    (every process takes part in checkpoints, which orbax coordinates)."""
    return jax.process_index() == 0


def record_failure(run_dir: str, error: BaseException) -> None:
    """Writes why a job failed to ``run_dir/failure.json`` (a sweep's record; process 0 only)."""
    if not is_primary_process():
        return
    os.makedirs(run_dir, exist_ok=True)
    write_json_atomically(
        os.path.join(run_dir, FAILURE_FILE),
        {"error": type(error).__name__, "message": str(error), "traceback": "".join(traceback.format_exception(error))},
    )
