"""Which config keys a resumed run may change, marked on the schema's fields.

A run directory belongs to one config: resuming with another is refused,
except for keys whose schema field is ``resumable(...)`` -- how long a run
lasts, how often it logs, evaluates and saves, and where and how fast it
reads its data. The set of such keys is read from the schema, never listed
by hand.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

_MARK = "resumable"


def resumable(default: Any = dataclasses.MISSING, **kwargs: Any) -> Any:
    """A ``dataclasses.field`` that a resumed run may change."""
    return dataclasses.field(default=default, metadata={_MARK: True}, **kwargs)


def resumable_keys(schema: type, prefix: str = "") -> frozenset[str]:
    """Dotted keys of the fields marked ``resumable`` in ``schema`` and its nested dataclasses."""
    keys: set[str] = set()
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        key = f"{prefix}{field.name}"
        if field.metadata.get(_MARK):
            keys.add(key)
        elif dataclasses.is_dataclass(hints[field.name]):
            keys |= resumable_keys(hints[field.name], f"{key}.")
    return frozenset(keys)
