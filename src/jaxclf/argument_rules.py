"""The ranges of the built-in targets' arguments, importable without JAX.

Each target checks its own arguments with ``check_arguments`` when it is
built; ``config.check_values`` runs the same rules on the composed config, so
a bad value is named before JAX is imported. A user's own target checks its
arguments itself (it is built after the imports).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Rule = Callable[[Any], bool]

POSITIVE_INTEGER: tuple[Rule, str] = (lambda value: value > 0, "it must be a positive integer")
POSITIVE: tuple[Rule, str] = (lambda value: value > 0, "it must be positive")
OFF_OR_POSITIVE: tuple[Rule, str] = (lambda value: value >= 0, "it must be 0 (off) or positive")
UNIT_INTERVAL: tuple[Rule, str] = (lambda value: 0 <= value <= 1, "it must lie in [0, 1]")

_OBJECTIVE = {"label_smoothing": UNIT_INTERVAL, "mixup_alpha": OFF_OR_POSITIVE, "cutmix_alpha": OFF_OR_POSITIVE}

RULES: dict[str, dict[str, tuple[Rule, str]]] = {
    "jaxclf.objectives.Objective": _OBJECTIVE,
    "jaxclf.objectives.Distillation": {**_OBJECTIVE, "temperature": POSITIVE, "alpha": UNIT_INTERVAL},
    "jaxclf.callbacks.PeriodicEvaluation": {"every_steps": POSITIVE_INTEGER},
    "jaxclf.callbacks.ModelCheckpoint": {"every_steps": POSITIVE_INTEGER, "max_to_keep": POSITIVE_INTEGER},
    "jaxclf.callbacks.EarlyStopping": {"patience": POSITIVE_INTEGER, "min_delta": OFF_OR_POSITIVE},
    "jaxclf.tensorboard_logger.TensorBoardLogger": {"every_steps": POSITIVE_INTEGER, "mistakes": OFF_OR_POSITIVE},
    "jaxclf.profiling.Profiler": {"start_step": OFF_OR_POSITIVE, "num_steps": POSITIVE_INTEGER},
}


def target_name(target: type) -> str:
    """A class's ``_target_`` path, e.g. ``jaxclf.callbacks.ModelCheckpoint``."""
    return f"{target.__module__}.{target.__qualname__}"


def check_arguments(target: str, arguments: Mapping[str, Any]) -> None:
    """Raises a one-line ``ValueError`` (``name=value is not valid; ...``) for
    the first of ``arguments`` outside its range for ``target``."""
    for name, (is_valid, requirement) in RULES.get(target, {}).items():
        value = arguments.get(name)
        if value is not None and not is_valid(value):
            raise ValueError(f"{name}={value} is not valid; {requirement}")
