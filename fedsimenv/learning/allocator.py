"""Keep freed memory in the process, so that large CPU tensors reuse pages instead of faulting new ones.

PyTorch's CPU tensors come from ``malloc``. With glibc's defaults, a block of a few MiB (a batched
cohort's activations: 50 devices x 16 samples x 32 x 8 x 8 floats = 6.5 MiB) is handed back to the
kernel when freed, either because it was ``mmap``-ed or because the top of the heap is trimmed, and
the next step's identical block page-faults in again. Measured on the 2-core development VM, the
batched small-CNN round at N = 50 spent a third of its time there (44 ms -> 29 ms with the tuning;
``python -m bench.cohort``). Raising glibc's mmap and trim thresholds keeps such blocks in the heap
(the process's resident size stays at its high-water mark instead of shrinking between steps).

This is process-wide, like ``torch.set_num_threads``: it changes how fast memory is reused, never a
result. It is applied once, on glibc only (elsewhere it does nothing), and ``FEDSIMENV_KEEP_FREED_MEMORY=0``
in the environment turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: The largest mmap threshold glibc accepts on 64-bit (DEFAULT_MMAP_THRESHOLD_MAX): 32 MiB.
MMAP_THRESHOLD_BYTES = 32 * 2**20
#: Free memory at the top of the heap kept before trimming.
TRIM_THRESHOLD_BYTES = 2**30

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Raise glibc's mmap/trim thresholds (once per process); True when they are in effect."""
    global _applied
    if _applied is None:
        _applied = _apply()
    return _applied


def _apply() -> bool:
    if os.environ.get("FEDSIMENV_KEEP_FREED_MEMORY", "1") == "0":
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl, macOS): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
