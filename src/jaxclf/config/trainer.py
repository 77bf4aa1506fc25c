"""The training loop's settings (``trainer`` in the config): plain data, cheap to
import, so a bad value is reported before JAX's libraries load."""

from __future__ import annotations

import dataclasses
import enum
import re
from typing import Optional

from jaxclf.config.resumable import resumable
from jaxclf.errors import ConfigError


class NonFinitePolicy(str, enum.Enum):
    stop = "stop"  # end the run (exit code 3), naming the step and the last good checkpoint
    skip = "skip"  # carry on, counting train/skipped_steps


@dataclasses.dataclass
class TrainerConfig:
    """The loop's settings (``trainer`` in the config)."""

    max_steps: int = resumable(300)
    # Training steps fused into one jitted call (lax.scan); calls never cross
    # a callback's period (logging, evaluation, checkpoints). null: chosen by
    # the step's cost (fused_steps_per_call).
    steps_per_call: Optional[int] = resumable(None)
    # Each step's batch is split into this many micro-batches whose gradients
    # are averaged before the one update (lax.scan): a big batch in small
    # memory. Like the mesh, it may change on resume (e.g. onto fewer devices).
    accumulate_steps: int = resumable(1)
    resume: bool = resumable(True)  # continue from the checkpoints in the run directory
    # A NaN or Inf in the loss or gradients: the update is never applied; then
    # stop the run or carry on.
    on_nonfinite: NonFinitePolicy = NonFinitePolicy.stop
    # With on_nonfinite=skip: stop once more than this fraction of the updates so far were skipped
    # (checked where a callback is due: the loop does not wait for the device between calls).
    max_skipped_fraction: float = resumable(0.1)
    # Stop after this much wall time of training, with a checkpoint, then test
    # (seconds, or [[DD:]HH:]MM:SS); the same command continues the run.
    max_time: Optional[str] = resumable(None)
    # Keep an exponential moving average of the weights (e.g. 0.999; its
    # decay warms up as min(ema_decay, (1 + step) / (10 + step))), which
    # every evaluation and prediction then uses. null: off.
    ema_decay: Optional[float] = None


_CLOCK = re.compile(r"(?:(?:(\d+):)?(\d+):)?(\d+):(\d+(?:\.\d*)?)")  # [[DD:]HH:]MM:SS


def parse_duration(value: str | float) -> float:
    """Seconds in ``value``: a number of seconds, or ``[[DD:]HH:]MM:SS`` (``00:12:00:00`` is 12 hours)."""
    text = str(value).strip()
    clock = _CLOCK.fullmatch(text)
    try:
        if clock:
            days, hours, minutes, seconds = (float(part or 0) for part in clock.groups())
            seconds += 60 * (minutes + 60 * (hours + 24 * days))
        else:
            seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(
            f"trainer.max_time={value} is not valid; give a positive number of seconds or [[DD:]HH:]MM:SS "
            "(e.g. trainer.max_time=00:30:00 for half an hour)"
        )
    return seconds
