"""Keep freed memory in the process: large ring tensors are allocated and freed at every
operation, and on this machine a fresh page costs more than the arithmetic on it (AES-CTR
into new memory: 2.5-15 ms per 10^6 elements, into reused memory 1.1 ms).

glibc returns a freed chunk above the mmap threshold to the kernel at once, and trims the
top of the heap above the trim threshold; `keep_freed_memory` raises the first to its
maximum (32 MiB: a tensor of 4 * 10^6 ring elements) and disables the second, so a
process's memory stays at its peak and the next operation reuses it. A no-op where glibc
is not the C library.
"""

from __future__ import annotations

import ctypes
import ctypes.util

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD_MAX = 32 << 20  # glibc's upper limit on 64-bit systems
_done = False


def keep_freed_memory() -> bool:
    """Set the allocator to keep freed memory (once per process); True if it could."""
    global _done
    if _done:
        return True
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and \
        bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    return _done
