"""SIGTERM/SIGINT become a request to stop at the next step boundary.

Schedulers (Slurm, Kubernetes, TPU maintenance) send SIGTERM some seconds
before killing a job; Ctrl-C sends SIGINT. While a ``PreemptionGuard`` is
active the first such signal is only recorded, so the Trainer can finish the
step in flight, save a checkpoint and exit cleanly; a second SIGINT
interrupts at once.

In a multi-process run a scheduler may signal one process only (or each at a
different moment): ``poll`` makes every process agree, at the same step
boundary, on whether any of them was signalled, so all of them save the same
step together and stop.
"""

from __future__ import annotations

import functools
import logging
import signal
import threading
from types import FrameType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

logger = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class PreemptionGuard:
    """Context manager: ``guard.received`` is the first signal caught, or None.

    Handlers can only be installed from the main thread; elsewhere (e.g. a
    launcher's worker thread) the guard does nothing."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None
        self._previous: dict[int, Any] = {}
        self._pending: jax.Array | None = None

    def _handle(self, number: int, frame: FrameType | None) -> None:
        if self.received is not None and number == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.received = signal.Signals(number)
        logger.warning("%s received: stopping after the current step and saving a checkpoint", self.received.name)

    def poll(self) -> signal.Signals | None:
        """The signal caught by this or any other process, or None; every
        process gets the same answer at the same call. Alone, it is this
        process's. With several processes, each call starts an asynchronous
        maximum over the processes of what each has caught and answers the one
        the previous call started: the loop never waits for it, and a signal
        acts within one jitted call. Every process must call it equally often."""
        if jax.process_count() == 1:
            return self.received
        previous, self._pending = self._pending, _maximum_over_processes(int(self.received or 0))
        number = 0 if previous is None else int(previous)
        return signal.Signals(number) if number else None

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is threading.main_thread():
            for number in SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()


@functools.cache
def _maximum_program(device_count: int) -> tuple[NamedSharding, Any]:
    """A value per device of every process in, their maximum out (replicated): compiled once."""
    mesh = Mesh(np.asarray(jax.devices()), ("processes",))
    replicated = NamedSharding(mesh, PartitionSpec())
    return NamedSharding(mesh, PartitionSpec("processes")), jax.jit(jnp.max, out_shardings=replicated)


def _maximum_over_processes(value: int) -> jax.Array:
    """The maximum of ``value`` over every process, on its way to the host (not waited for)."""
    sharding, maximum = _maximum_program(jax.device_count())
    local = np.full(jax.local_device_count(), value, np.int32)
    result = maximum(jax.make_array_from_process_local_data(sharding, local))
    result.copy_to_host_async()
    return result
