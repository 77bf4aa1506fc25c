"""The valid ranges of the built-in targets' arguments, importable without JAX.

A range is part of an argument's type, on the signature that takes it::

    def __init__(self, every_steps: PositiveInt, max_to_keep: PositiveInt = 3): ...

The target checks its arguments with ``check_arguments`` when it is built;
``tools/write_schemas.py`` reads the same ranges into
``jaxclf.config.schemas.RANGES``, which ``jaxclf.config.validation`` checks
on the composed config, so a bad value is named before JAX is imported. The
rules between the models' sizes follow.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, cast


@dataclasses.dataclass(frozen=True)
class Range:
    """The values an argument may take; ``name`` is this module's constant for it."""

    name: str
    contains: Callable[[Any], bool]
    requirement: str  # what the error says: "it must be positive"

    def check(self, argument: str, value: Any) -> None:
        """Raises a one-line ``ValueError`` (``name=value is not valid; ...``) for a value outside."""
        if value is not None and not self.contains(value):
            raise ValueError(f"{argument}={value} is not valid; {self.requirement}")


POSITIVE_INTEGER = Range("POSITIVE_INTEGER", lambda value: value > 0, "it must be a positive integer")
POSITIVE = Range("POSITIVE", lambda value: value > 0, "it must be positive")
OFF_OR_POSITIVE = Range("OFF_OR_POSITIVE", lambda value: value >= 0, "it must be 0 (off) or positive")
UNIT_INTERVAL = Range("UNIT_INTERVAL", lambda value: 0 <= value <= 1, "it must lie in [0, 1]")

PositiveInt = Annotated[int, POSITIVE_INTEGER]
OffOrPositiveInt = Annotated[int, OFF_OR_POSITIVE]
Positive = Annotated[float, POSITIVE]
OffOrPositive = Annotated[float, OFF_OR_POSITIVE]
Fraction = Annotated[float, UNIT_INTERVAL]


def ranges_of(target: Callable[..., Any]) -> dict[str, Range]:
    """The ``Range`` of each argument of ``target`` (a class or function) whose type carries one."""
    signature = cast(Any, target).__init__ if isinstance(target, type) else target
    hints = typing.get_type_hints(signature, include_extras=True)
    return {
        name: kept[0]
        for name, hint in hints.items()
        if (kept := [item for item in getattr(hint, "__metadata__", ()) if isinstance(item, Range)])
    }


def check_ranges(ranges: Mapping[str, Range], arguments: Mapping[str, Any]) -> None:
    """Raises a one-line ``ValueError`` for the first of ``arguments`` outside its range."""
    for name, allowed in ranges.items():
        allowed.check(name, arguments.get(name))


def check_arguments(target: Callable[..., Any], arguments: Mapping[str, Any]) -> None:
    """``check_ranges`` with the ranges on ``target``'s signature."""
    check_ranges(ranges_of(target), arguments)


def check_num_heads(hidden_size: int, num_heads: int) -> None:
    """Raises a one-line ``ValueError`` unless the heads split the width evenly."""
    if num_heads <= 0 or hidden_size % num_heads:
        raise ValueError(
            f"num_heads={num_heads} does not divide hidden_size={hidden_size}; "
            "choose a positive head count that divides the width"
        )


def check_patch_size(image_shape: Sequence[int], patch_size: int) -> None:
    """Raises a one-line ``ValueError`` unless patches tile the image exactly."""
    height, width = image_shape[:2]
    if patch_size <= 0 or height % patch_size or width % patch_size:
        raise ValueError(
            f"patch_size={patch_size} does not divide the image shape {list(image_shape)}; "
            "choose a patch size that divides both height and width"
        )


def check_sincos2d_width(hidden_size: int) -> None:
    """Raises a one-line ``ValueError`` unless the width splits into the 4 sine-cosine parts."""
    if hidden_size % 4:
        raise ValueError(f"hidden_size={hidden_size} is not valid with posemb=sincos2d; it must be a multiple of 4")


def check_group_size(batch_size: int, group_size: int) -> None:
    """A one-line ``ValueError`` unless ``group_size`` divides the ``batch_size`` each step sees."""
    if group_size <= 0 or batch_size % group_size:
        raise ValueError(
            f"batch_norm_group_size={group_size} is not valid; it must be a positive divisor of the batch "
            f"each step sees ({batch_size})"
        )
