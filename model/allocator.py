"""glibc malloc settings for a process that allocates and frees tens of megabytes per photo.

By default glibc serves each block over its (adaptive) mmap threshold with a fresh mapping and
gives every freed block back to the kernel as soon as 128 KB are free at the top of the heap.
The LRL's activations on a 384x384 face crop are 7-22 MB each, so every crop mapped and faulted
in about 130 MB of new, zeroed pages (33,000-37,000 page faults), which on this project's 2-core
CPU was a third of the LRL's time (docs/benchmarks.md). Keeping blocks of up to 32 MB in the heap
and freed memory in the process lets each crop reuse the pages of the one before.

Nothing here imports torch: the face workers, which never load it, call it too.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from collections.abc import Mapping

logger = logging.getLogger(__name__)

MMAP_THRESHOLD = 32 * 1024 * 1024
"""Blocks below this come from the heap; glibc's own ceiling for the setting on 64-bit."""
TRIM_THRESHOLD = 256 * 1024 * 1024
"""Free memory at the top of the heap kept for the next photo rather than returned at once."""

ENVIRONMENT_VARIABLE = "ABPN_TUNE_MALLOC"
"""Set to false (or 0, no, off) to keep glibc's defaults; read by the service's settings too."""
_OFF = {"0", "false", "no", "off"}

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_malloc() -> bool:
    """Keep blocks of up to MMAP_THRESHOLD and up to TRIM_THRESHOLD of freed memory in this
    process's heap. Returns False, changing nothing, where the C library is not glibc."""
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        logger.warning("glibc's mallopt is not reachable; malloc keeps its defaults")
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # Either call fails only for an out-of-range value (mallopt returns 0).
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ABPN_TUNE_MALLOC asks for the tuning (on unless false, 0, no or off), for the
    command-line tool; the service reads the same variable through its settings."""
    return environ.get(ENVIRONMENT_VARIABLE, "true").strip().lower() not in _OFF
