"""The optimizers' closed choices, as Enums the config schema checks (importable without JAX)."""

from __future__ import annotations

import enum


class Decay(str, enum.Enum):
    """How the learning rate falls after its warmup."""

    cosine = "cosine"  # to 0 at total_steps
    step = "step"  # times decay_factor at each of decay_steps


class MomentDtype(str, enum.Enum):
    """The dtype Adam keeps its first moment in (big_vision: bfloat16, half the memory)."""

    float32 = "float32"
    bfloat16 = "bfloat16"
