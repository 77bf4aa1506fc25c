"""What a run prints: jaxclf's own lines and the progress bar. The libraries'
start-up chatter (TensorFlow's C++ log, absl's warnings from TFDS and orbax)
is shown only when asked for (``hydra.verbose=true``)."""

from __future__ import annotations

import logging
import os
import time

# Libraries that log through absl at WARNING what a user cannot act on:
# "OpenCV is not installed", orbax's "Given directory is read only".
_CHATTY_LOGGERS = ("absl",)
_IMPORTED = time.monotonic()


def quiet_libraries() -> None:
    """Silences the libraries' chatter unless the root logger is at DEBUG.
    Call it before TensorFlow is imported: its C++ log reads the environment once."""
    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
    for name in _CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if verbose else logging.ERROR)
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # its start-up notice; TF only prepares datasets here


def seconds_since_process_start() -> float:
    """Wall time since this process started (from ``/proc`` on Linux;
    elsewhere since jaxclf's console was first imported, which a launch does first)."""
    try:
        with open("/proc/self/stat") as stat, open("/proc/uptime") as uptime:
            started_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])  # field 22, after the command name
            return float(uptime.read().split()[0]) - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED
