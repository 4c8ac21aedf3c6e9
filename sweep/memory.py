"""Process-wide allocator setting for large array work (Linux/glibc only).

NumPy allocates a fresh temporary for nearly every array operation. glibc serves large
requests with mmap and gives them back with munmap, so every temporary is first-touched
page by page again; on virtual machines those page faults can cost more than the
arithmetic (measured in README "Speed": up to 1.6x on a 128 GiB zone). Keeping freed
memory in the heap lets NumPy reuse it. Set ``COMPACTION_SWEEP_KEEP_HEAP=0`` to leave
glibc's defaults alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse; True if the settings were applied."""
    if os.environ.get("COMPACTION_SWEEP_KEEP_HEAP", "1") == "0" or not sys.platform.startswith(
        "linux"
    ):
        return False
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok = mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # glibc's maximum: larger blocks still use mmap
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    ok &= mallopt(_M_TOP_PAD, 256 << 20)
    return bool(ok)
