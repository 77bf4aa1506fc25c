"""JAX's persistent compilation cache: a later launch of the same programs
loads them instead of compiling. Bounded in size, least recently used first out."""

from __future__ import annotations

import contextlib
import glob
import logging
import os
from pathlib import Path

import filelock
import jax

logger = logging.getLogger(__name__)

COMPILATION_CACHE_BYTES = 2**30  # least recently used programs are evicted beyond this
_ENTRY, _LAST_USE = "-cache", "-atime"  # the suffixes of JAX's two files per program (jax._src.lru_cache)


def use_compilation_cache(directory: str) -> None:
    """Compiled programs persist in ``directory``: every one (XLA:CPU compiles
    the default model's steps in well under JAX's default 1 s threshold, yet
    they are most of a warm launch). A directory that cannot be created or
    written only costs speed: one warning, and the run compiles as usual."""
    path = os.path.expanduser(directory)
    try:
        os.makedirs(path, exist_ok=True)
        _date_undated_entries(path)
    except OSError as error:
        logger.warning(
            "hardware.compilation_cache_dir=%s cannot be used (%s); compiling without a cache "
            "(set it to a writable directory, or null)",
            directory,
            error.strerror,
        )
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_compilation_cache_max_size", COMPILATION_CACHE_BYTES)


def _date_undated_entries(path: str) -> None:
    """Gives every program in the cache the last-use stamp that JAX's bounded
    cache reads before each write. Programs written with no bound (by plain
    JAX, an older jaxclf, or a process killed between its two files) have
    none, and then JAX writes no new program at all ("Error writing persistent
    compilation cache entry"). They are stamped with their file's time."""
    with filelock.FileLock(os.path.join(path, ".lockfile")):  # the lock JAX's cache takes
        for entry in glob.glob(os.path.join(glob.escape(path), f"*{_ENTRY}")):
            stamp = Path(entry.removesuffix(_ENTRY) + _LAST_USE)
            if not stamp.exists():
                with contextlib.suppress(FileNotFoundError):  # evicted meanwhile by another process
                    stamp.write_bytes(os.stat(entry).st_mtime_ns.to_bytes(8, "little"))
