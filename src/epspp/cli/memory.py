"""Freed tensor memory kept for reuse in an ``epspp fit|validate|test|predict`` process (Linux, glibc).

glibc's allocator serves every block over 32 MiB with its own ``mmap`` and unmaps it when freed, so each new
activation of a large CPU forward pass (ResNet-38d at a VOC image's scale 2.0: hundreds of MiB) is fresh memory
that the kernel zeroes page by page as it is first written. One forward of ResNet-38d on a 500x375 image and
its flip took ~810,000 page faults and 1.5-2 s of system time in 12-18 s at one thread (BENCHMARKS.md,
section 13). With ``M_MMAP_MAX`` 0 the blocks come from the heap instead, and with ``M_TRIM_THRESHOLD`` at its
largest (2 GiB) the heap keeps what is freed for the next pass: no page faults after the first pass, the same
numbers. The cost: the process's memory stays near its peak until it ends (freed memory goes back to the
system only when more than 2 GiB of it lies at the heap's top). Set for the console script's own process (and
the DDP processes it starts), not for a Python caller of ``epspp.cli.main``.

Set ``EPSPP_DEFAULT_MALLOC=1`` to leave the allocator as it is; a preloaded allocator (jemalloc, tcmalloc) is
not concerned by these glibc settings.
"""

from __future__ import annotations

import ctypes
import os
import sys

#: ``EPSPP_DEFAULT_MALLOC=1``: leave glibc's allocator settings as they are
DEFAULT_MALLOC_ENV = "EPSPP_DEFAULT_MALLOC"
#: glibc's ``mallopt`` parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
#: the largest trim threshold mallopt takes (an int): freed memory at the heap's top is kept up to 2 GiB
KEPT_BYTES = 2**31 - 1


def keep_freed_memory() -> bool:
    """Have glibc's allocator serve large blocks from the heap and keep freed memory for reuse; whether it was set
    (False off Linux, without glibc's ``mallopt``, or with ``EPSPP_DEFAULT_MALLOC`` set to 1/true/yes)."""
    if os.environ.get(DEFAULT_MALLOC_ENV, "").strip().lower() in ("1", "true", "yes"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library to load, or one without mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, KEPT_BYTES) == 1
