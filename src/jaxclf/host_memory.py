"""Host memory that a step frees stays with the process for the next step.

glibc's malloc hands large blocks back to the kernel as soon as they are
freed: blocks above its mmap threshold are unmapped, and a free top of the
heap is trimmed. XLA:CPU allocates each step's temporaries anew, so every step
the kernel would map them again and zero each page on first touch. With both
thresholds unlimited, freed blocks stay in the heap and the next step reuses
them, as PyTorch's and TensorFlow's caching allocators do. The cost: the
process keeps its peak heap until it exits. ``bench/models.py`` counts the
page faults per step either way.

Limits: glibc only (elsewhere nothing changes). Blocks allocated by a thread
other than the main one come from that thread's arena, whose heaps are
bounded, so a model whose temporaries outgrow them still maps them anew;
``MALLOC_ARENA_MAX=1`` in the environment keeps those too, at the price of one
lock for every thread's allocations.
"""

from __future__ import annotations

import ctypes
import logging
import platform

logger = logging.getLogger(__name__)

# <malloc.h>'s mallopt parameters, and -1: size_t's largest value once glibc converts it.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
UNLIMITED = -1


def keep_freed_memory() -> bool:
    """Freed blocks stay in this process's heap; True if glibc took both settings."""
    if platform.libc_ver()[0] != "glibc":
        logger.debug("Host memory: not glibc, allocator settings left alone")
        return False
    libc = ctypes.CDLL(None)  # the C library this process already runs on
    kept = all(libc.mallopt(option, UNLIMITED) == 1 for option in (M_TRIM_THRESHOLD, M_MMAP_THRESHOLD))
    logger.debug("Host memory: freed blocks %s", "kept for reuse" if kept else "returned (mallopt refused)")
    return kept
