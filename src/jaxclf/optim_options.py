"""The optimizers' closed choices, as Enums the config schema checks (importable without JAX)."""

from __future__ import annotations

import enum


class Decay(str, enum.Enum):
    """How the learning rate falls after its warmup."""

    cosine = "cosine"  # to 0 at total_steps
    step = "step"  # times decay_factor at each of decay_steps
