"""The processes of one multi-process run: they agree on what they run, and
none outlives a lost peer.

Right after ``jax.distributed`` joins them, every process publishes its
config (less the keys that may differ between hosts) and its run directory
in JAX's key-value store, under its process id, and reads every other's:
processes started with different configs, or two with one id, stop at once
with one line each instead of computing a mix of two runs or hanging in a
collective.

While the run lasts, a watchdog thread in each process beats in the same
store and reads the others' beats. A process that stops beating (killed, or
stuck), or a coordinator that stops answering, ends every other process with
one line and exit code 5 within ``hardware.distributed_timeout`` -- a
collective waiting for the lost process would otherwise wait until JAX
aborts the process with a C++ trace. Committed checkpoints stay intact:
starting every process again with the same command resumes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import jax

from jaxclf.errors import ConfigError, ProcessesDisagree

logger = logging.getLogger(__name__)

# Keys that may differ between the processes of one run: who they are, where
# each host keeps its files, and host threads that do not change the results.
PER_PROCESS_KEYS = (
    "hardware.process_id",
    "hardware.compilation_cache_dir",
    "hardware.keep_host_memory",
    "data.data_dir",
    "data.manual_dir",
    "data.workers",
    "data.prefetch",
)
LOST_PEER_EXIT_CODE = 5
BEAT_SECONDS = 1.0
_KEY = "jaxclf"
_rounds = itertools.count()  # one agreement per job: a multirun's jobs share the store


def check_port_free(address: str) -> None:
    """Raises a ``ConfigError`` if the coordinator's port (``host:port``) is in
    use on this host: another process 0 of the run, or another program (the
    coordination service shares its port with a second one, and both hang)."""
    port = int(address.rsplit(":", 1)[-1])
    with socket.socket(socket.AF_INET6 if ":" in address.rsplit(":", 1)[0] else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed run's lingering connections are fine
        try:
            probe.bind(("", port))
        except OSError:
            raise ConfigError(
                f"hardware.coordinator_address={address}: port {port} is in use on this host (another process with "
                "hardware.process_id=0, or another program); give each process its own hardware.process_id, and "
                "process 0 a free port"
            ) from None


@contextlib.contextmanager
def deadline(seconds: float, message: str) -> Iterator[None]:
    """Ends this process with ``message`` as one line (exit code 2) if the block
    runs longer than ``seconds``: for calls that cannot be interrupted."""
    timer = threading.Timer(seconds, _exit_with, (message, 2))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _client() -> Any:
    from jax._src import distributed  # the client jax.distributed.initialize() connected

    return distributed.global_state.client


def compared_config(values: Mapping[str, Any], workdir: str) -> dict[str, Any]:
    """What every process of a run must agree on: ``values`` (flat, dotted keys)
    less ``PER_PROCESS_KEYS``, and the run directory."""
    kept = {key: value for key, value in values.items() if not key.startswith(PER_PROCESS_KEYS)}
    return {**kept, "run directory": os.path.abspath(workdir)}


def agree(config: Mapping[str, Any], timeout_s: float) -> None:
    """Raises a one-line ``ConfigError`` unless every process of the run was
    given ``config`` (``compared_config``'s) and a process id of its own;
    waits at most ``timeout_s`` for the others. Every process must call it;
    every process reads every other's config before any of them raises, so a
    disagreement is ``ProcessesDisagree`` in every process."""
    client, me, count = _client(), jax.process_index(), jax.process_count()
    prefix = f"{_KEY}/config/{next(_rounds)}"
    mine = json.loads(json.dumps(config, sort_keys=True, default=str))
    try:
        client.key_value_set(f"{prefix}/{me}", json.dumps(mine))
    except Exception:  # noqa: BLE001 (XLA's error for a key that is set already)
        raise ConfigError(
            f"hardware.process_id={me}: another process of this run has the same id; give each process its own "
            f"hardware.process_id in [0, {count})"
        ) from None
    differences = {}
    for other in range(count):
        theirs = json.loads(_waited_for(client, f"{prefix}/{other}", timeout_s, f"process {other} of {count}"))
        if theirs != mine:
            differences[other] = _differences(mine, theirs)
    try:
        client.wait_at_barrier(f"{prefix}/compared", int(timeout_s * 1000))  # none leaves before all have read
    except Exception:  # noqa: BLE001 (XLA's deadline error)
        raise ConfigError(f"not every process compared configs within {timeout_s:.0f} s; {_SAME_COMMAND}") from None
    if differences:
        other, what = next(iter(differences.items()))
        raise ProcessesDisagree(
            f"the processes were given different configs: {what} (process {me} -> process {other}); {_SAME_COMMAND}"
        )


_SAME_COMMAND = "start every process with the same command (only hardware.process_id differs)"


def _waited_for(client: Any, key: str, timeout_s: float, who: str) -> str:
    try:
        return client.blocking_key_value_get(key, int(timeout_s * 1000))
    except Exception:  # noqa: BLE001 (XLA's deadline error)
        raise ConfigError(f"{who} did not report its config within {timeout_s:.0f} s; {_SAME_COMMAND}") from None


def _differences(mine: Mapping[str, Any], theirs: Mapping[str, Any]) -> str:
    keys = sorted(key for key in set(mine) | set(theirs) if mine.get(key) != theirs.get(key))
    return ", ".join(f"{key}={mine.get(key)!r} -> {theirs.get(key)!r}" for key in keys[:5])


@contextlib.contextmanager
def watched(timeout_s: float) -> Iterator[None]:
    """While the block runs, a watchdog ends this process with one line and
    ``LOST_PEER_EXIT_CODE`` if another process of the run stops beating for
    ``timeout_s / 2``, or the coordinator stops answering. A process whose
    block ended without an exception beats "done": never taken for lost."""
    watchdog = _Watchdog(timeout_s / 2)
    watchdog.start()
    try:
        yield
    except BaseException:
        watchdog.stop(done=False)  # this process leaves: the others will notice, unless they stop too
        raise
    watchdog.stop(done=True)


class _Watchdog(threading.Thread):
    def __init__(self, silence_s: float):
        super().__init__(name="jaxclf-peers", daemon=True)
        self.silence_s = silence_s
        self.stopping = threading.Event()
        self.me, self.count = jax.process_index(), jax.process_count()
        self.round = next(_rounds)

    def _key(self, process: int) -> str:
        return f"{_KEY}/alive/{self.round}/{process}"

    def run(self) -> None:
        client = _client()
        last: dict[int, tuple[str | None, float]] = {}
        for beat in itertools.count():
            if self.stopping.wait(BEAT_SECONDS if beat else 0):
                return
            try:
                client.key_value_set(self._key(self.me), str(beat), allow_overwrite=True)
                seen = {other: _try_get(client, self._key(other)) for other in range(self.count) if other != self.me}
            except Exception as error:  # noqa: BLE001 (any failure to reach the coordinator)
                if not self.stopping.is_set():
                    _lost(f"the coordinator (process 0) stopped answering ({str(error).splitlines()[0]})")
                return
            now = time.monotonic()
            for other, value in seen.items():
                if value != last.get(other, (None, now))[0] or other not in last:
                    last[other] = (value, now)
                elif value != "done" and now - last[other][1] > self.silence_s and not self.stopping.is_set():
                    silence = f"no sign of it for {self.silence_s:.0f} s"
                    _lost(f"process {other} of {self.count} stopped answering ({silence})")

    def stop(self, done: bool) -> None:
        self.stopping.set()
        if done:
            with contextlib.suppress(Exception):
                _client().key_value_set(self._key(self.me), "done", allow_overwrite=True)


def _try_get(client: Any, key: str) -> str | None:
    """The key's value, or None while it is not set."""
    try:
        return client.key_value_try_get(key)
    except Exception as error:
        if "NOT_FOUND" in str(error) or "not found" in str(error).lower():
            return None
        raise


def _lost(what: str) -> None:
    """Ends this process at once (its main thread may wait in a collective forever)."""
    _exit_with(
        f"{what}; stopping this process too; committed checkpoints are intact: start every process again with the "
        "same command to resume",
        LOST_PEER_EXIT_CODE,
    )


def _exit_with(message: str, code: int) -> None:
    print(f"jaxclf: error: {message}", file=sys.stderr, flush=True)
    logging.shutdown()
    os._exit(code)
