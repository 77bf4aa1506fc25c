"""One process per run directory: an OS file lock held for the life of a run.

``held(run_dir)`` takes an exclusive ``flock`` on ``run_dir/.lock`` (and
writes who holds it there) or refuses with one line naming the holder. The
operating system releases it when the process ends in any way, so a SIGKILL
never leaves a stale lock. In a multi-process run process 0 holds it for all.
``LockCheck`` refuses a launch into a locked directory before Hydra writes
anything there.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from jaxclf.errors import ConfigError

LOCK_FILE = ".lock"
_held: dict[str, int] = {}  # lock path -> the descriptor that holds it, in this process


def _lock_path(run_dir: str) -> str:
    return os.path.join(os.path.abspath(run_dir), LOCK_FILE)


def _in_use(run_dir: str, descriptor: int) -> ConfigError:
    try:
        holder = json.loads(os.pread(descriptor, 4096, 0) or b"{}")
        who = f"process {holder['pid']} on {holder['host']} since {holder['started']}"
    except (ValueError, KeyError):
        who = "another process"
    return ConfigError(f"{run_dir} is in use by {who}; wait for that run to end, or choose another hydra.run.dir")


@contextlib.contextmanager
def held(run_dir: str, take: bool = True) -> Iterator[None]:
    """Holds ``run_dir``'s lock inside the block (``take=False``: a process
    that is not process 0 takes none). Nested use in one process is allowed."""
    path = _lock_path(run_dir)
    if not take or path in _held:
        yield
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        error = _in_use(run_dir, descriptor)
        os.close(descriptor)
        raise error from None
    started = datetime.datetime.now().isoformat("T", "seconds")
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "started": started}
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, json.dumps(holder).encode(), 0)
    _held[path] = descriptor
    try:
        yield
    finally:
        del _held[path]
        os.close(descriptor)  # releases the lock; the file stays (removing it would race a waiting launch)


def check_unlocked(run_dir: str) -> None:
    """Raises a ``ConfigError`` naming the holder if another process holds ``run_dir``'s lock; takes nothing."""
    path = _lock_path(run_dir)
    if path in _held or not os.path.exists(path):
        return
    descriptor = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _in_use(run_dir, descriptor) from None
    finally:
        os.close(descriptor)


def check_writable(*paths: str, hint: str = "") -> None:
    """Raises a ``ConfigError`` unless each of ``paths`` is a directory this
    process can write, or can be made (``hint`` ends the message)."""
    for path in paths:
        if not os.path.lexists(path):
            _check_creatable(path)
        elif not os.path.isdir(path):
            raise ConfigError(f"{path} is not a directory; move it away or choose another hydra.run.dir{hint}")
        if os.path.isdir(path) and not os.access(path, os.W_OK):
            raise ConfigError(f"{path} is not writable; make it writable or choose another hydra.run.dir{hint}")


def _check_creatable(path: str) -> None:
    """Raises a ``ConfigError`` unless the nearest existing ancestor of ``path`` is a writable directory."""
    ancestor = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise ConfigError(f"{path} is under {ancestor}, which is not a directory; choose another hydra.run.dir")
    if not os.access(ancestor, os.W_OK):
        raise ConfigError(f"{path} cannot be made: {ancestor} is not writable; choose another hydra.run.dir")


class LockCheck(Callback):
    """Hydra callback: a single run into a directory that another process
    holds, or that cannot be written, stops with one line and exit code 2
    before Hydra writes there.
    (A multi-process run's other processes share process 0's directory: not checked.)"""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        hardware = config.get("hardware", {})
        if hardware.get("distributed") or (hardware.get("num_processes") or 1) > 1:
            return
        run_dir = str(config.hydra.run.dir)
        try:
            check_unlocked(run_dir)
            # Before Hydra's log file fails there.
            check_writable(run_dir, hint=" (mode=evaluate evaluation.run_dir=... re-tests a run it cannot write to)")
        except ConfigError as error:
            print(f"jaxclf: error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
