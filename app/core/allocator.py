"""glibc's allocator told to keep a photograph's working memory for the next photograph.

A field's work makes and frees arrays of 50-600 KB (planes, masks, distances). By default
glibc gives the free top of its heap back to the system once it passes 128 KB or so, and
maps bigger blocks afresh each time, so the next photograph pays a page fault for every
4 KB page it touches again. Two thresholds (``mallopt``) keep that memory: blocks under
MMAP_BYTES come from the heap, and up to TRIM_BYTES of free heap top is kept. A 12 MP
photograph's own planes are still mapped and given back whole.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform

log = logging.getLogger(__name__)

# mallopt's parameter numbers (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Under this, a block comes from the heap: a 224 px field's arrays, not a 12 MP photograph's.
MMAP_BYTES = 4 * 2**20
# Free heap top kept before any is given back.
TRIM_BYTES = 16 * 2**20
# glibc's own environment settings, which an operator's choice wins over ours.
ENVIRONMENT = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


@functools.cache
def keep_working_memory() -> bool:
    """Set the two thresholds once per process; False where the C library is not glibc or
    the environment sets them already."""
    if any(name in os.environ for name in ENVIRONMENT) or platform.libc_ver()[0] != "glibc":
        return False
    try:
        # The process's own symbols, the C library's among them: no library search.
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_BYTES) == 1)
    done = done and bool(mallopt(M_TRIM_THRESHOLD, TRIM_BYTES) == 1)
    if not done:
        log.warning("the C library refused the allocator's thresholds")
    return done
