"""SIGTERM/SIGINT become a request to stop at the next step boundary.

Schedulers (Slurm, Kubernetes, TPU maintenance) send SIGTERM some seconds
before killing a job; Ctrl-C sends SIGINT. While a ``PreemptionGuard`` is
active the first such signal is only recorded, so the Trainer can finish the
step in flight, save a checkpoint and exit cleanly; a second SIGINT
interrupts at once.

In a multi-process run a scheduler may signal one process only (or each at a
different moment): ``received_by_any_process`` makes every process agree, at
the same step boundary, on whether any of them was signalled, so all of them
save the same step together and stop.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class PreemptionGuard:
    """Context manager: ``guard.received`` is the first signal caught, or None.

    Handlers can only be installed from the main thread; elsewhere (e.g. a
    launcher's worker thread) the guard does nothing."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.received is not None and number == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.received = signal.Signals(number)
        logger.warning("%s received: stopping after the current step and saving a checkpoint", self.received.name)

    def received_by_any_process(self) -> signal.Signals | None:
        """The signal caught by this or any other process (the same answer in
        every process), or None. Every process must call it at the same
        points: with several processes it is a collective, a small host sync."""
        if jax.process_count() == 1:
            return self.received
        numbers = multihost_utils.process_allgather(np.int32(self.received or 0))
        return signal.Signals(int(numbers.max())) if numbers.max() else None

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()
