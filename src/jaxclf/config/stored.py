"""A run's stored config, read as data and never as code.

Run directories travel: a teacher, a checkpoint to evaluate, a colleague's
run. The config a run stores says which model and optimizer rebuild its
state, and Hydra would call whatever a ``_target_`` names, with whatever
``_args_`` and interpolations it holds. So, unless the user trusts the run
(``evaluation.trust_run_config=true``), only jaxclf's own models and
optimizers are rebuilt from it, from plain values their schemas type, and
only jaxclf's own dataset builders are imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from jaxclf.config.schema import DataConfig
from jaxclf.config.schemas import TARGETS
from jaxclf.errors import ConfigError

TRUST_FLAG = "evaluation.trust_run_config=true"
# The parts of a stored config a reader uses, and the targets each may name.
TARGET_PREFIXES = {"model": "jaxclf.models.", "optim": "jaxclf.optim."}
READ_SECTIONS = ("model", "optim", "data", "trainer")
# The modules of jaxclf that register a TFDS builder (``data.builder_module``).
BUILDER_MODULES = frozenset({"jaxclf.data.digits", "jaxclf.data.mnist_files"})


def checked(saved: Mapping[str, Any], run_dir: str, trust: bool) -> Mapping[str, Any]:
    """``saved`` (the config stored in ``run_dir``) once it is safe to rebuild
    from; else a one-line ``ConfigError`` naming the key and the flag that
    trusts the run. ``trust`` skips every check."""
    if trust:
        return saved
    for section in READ_SECTIONS:
        if not isinstance(saved.get(section), Mapping):
            raise _refused(run_dir, f"{section}={saved.get(section)!r}", "is not a mapping")
    for section, prefix in TARGET_PREFIXES.items():
        _check_target_name(saved[section], section, prefix, run_dir)
    for section in READ_SECTIONS:
        _check_plain(saved[section], section, run_dir, allowed_target=section in TARGET_PREFIXES)
    for section in TARGET_PREFIXES:
        _check_target_values(saved[section], section, run_dir)
    builder_module = saved["data"].get("builder_module")
    if builder_module is not None and builder_module not in BUILDER_MODULES:
        raise _refused(run_dir, f"data.builder_module={builder_module}", "is not one of jaxclf's dataset modules")
    _check_types(OmegaConf.structured(DataConfig), saved["data"], "data", run_dir)
    return saved


def _check_plain(node: Mapping[str, Any], path: str, run_dir: str, allowed_target: bool) -> None:
    """Every key under ``node`` is a plain name (``_target_`` only at its top,
    where ``allowed_target``) and every value a number, string, bool, null, or
    a list or mapping of them, with no interpolation."""
    for key, value in node.items():
        name = f"{path}.{key}"
        if str(key).startswith("_") and not (allowed_target and key == "_target_"):
            raise _refused(run_dir, name, "is a Hydra instruction, not a value")
        _check_value(value, name, run_dir)


def _check_value(value: Any, name: str, run_dir: str) -> None:
    if isinstance(value, Mapping):
        _check_plain(value, name, run_dir, allowed_target=False)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_value(item, f"{name}[{index}]", run_dir)
    elif isinstance(value, str) and "${" in value:
        raise _refused(run_dir, f"{name}={value!r}", "is an interpolation (a stored config is resolved)")
    elif not (value is None or isinstance(value, (bool, int, float, str))):
        raise _refused(run_dir, f"{name}={value!r}", "is not a plain value")


def _check_target_name(node: Mapping[str, Any], section: str, prefix: str, run_dir: str) -> None:
    """``node`` names one of jaxclf's own targets of its kind."""
    target = node.get("_target_")
    if target not in TARGETS or not str(target).startswith(prefix):
        kind = "models" if section == "model" else "optimizers"
        raise _refused(run_dir, f"{section}._target_={target}", f"is not one of jaxclf's {kind}")


def _check_target_values(node: Mapping[str, Any], section: str, run_dir: str) -> None:
    """``node``'s values are plain ones of the types its target's schema gives them."""
    for key, value in node.items():
        if isinstance(value, Mapping):
            raise _refused(run_dir, f"{section}.{key}", "is a mapping; jaxclf's targets take plain values")
    _check_types(OmegaConf.structured(TARGETS[node["_target_"]]), node, section, run_dir)


def _check_types(schema: Any, node: Mapping[str, Any], section: str, run_dir: str) -> None:
    try:
        OmegaConf.merge(schema, node)
    except OmegaConfBaseException as error:
        reason = str(error).splitlines()[0]
        raise _refused(run_dir, f"{section}.{error.full_key}", f"does not fit its schema ({reason})") from None


def _refused(run_dir: str, what: str, why: str) -> ConfigError:
    return ConfigError(
        f"{run_dir}: its stored config's {what} {why}; a run directory is read as data, not code "
        f"(if you trust this run's code, set {TRUST_FLAG})"
    )
