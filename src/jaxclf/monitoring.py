"""What a callback may monitor: a metric's name and which way is better.

Plain Enums, importable without JAX, so the config schema can check them.
"""

from __future__ import annotations

import enum


class MetricName(str, enum.Enum):
    """What an evaluation reports (``top5_accuracy`` only with more than ``evaluation.top5_min_classes``)."""

    accuracy = "accuracy"
    loss = "loss"
    nll = "nll"
    ece = "ece"
    brier = "brier"
    top5_accuracy = "top5_accuracy"


class MetricMode(str, enum.Enum):
    """Whether a higher (max) or lower (min) value of a metric is better."""

    max = "max"
    min = "min"
