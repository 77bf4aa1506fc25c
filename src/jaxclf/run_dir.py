"""The run directory: what a jaxclf run leaves behind, and reading it back.

One run, one directory::

    summary.json           final metrics (mode=fit)
    evaluation.json        a re-test of the latest checkpoint (mode=evaluate)
    failure.json           why a multirun job failed
    checkpoints/<step>/    orbax: the train state and meta (config, callback state)
    corrupt_checkpoints/   checkpoints that did not read back, set aside
    events.out.tfevents.*  TensorBoard

This module owns those names, the run's config (what may change on resume)
and the run's JSON files; ``jaxclf.restore`` reads models back from a run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import traceback
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

import jax

from jaxclf import run_lock
from jaxclf.checkpointing import CheckpointStore, Retention

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


@contextlib.contextmanager
def replaced_atomically(path: str, newline: str | None = None) -> Iterator[TextIO]:
    """A text file to write in place of ``path``: written to ``path.tmp``, then
    renamed over ``path`` when the block ends without an exception, and
    removed when it raises: ``path`` is left as it was."""
    temporary = f"{path}.tmp"
    try:
        with open(temporary, "w", newline=newline) as file:
            yield file
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
