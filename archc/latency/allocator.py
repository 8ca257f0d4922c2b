"""One allocator state for every CPU timing: freed memory stays in the process.

torch's CPU tensors come from glibc's malloc, whose defaults return memory to the kernel as soon as it
is freed: a tensor over the (adaptive) mmap threshold gets fresh pages on every forward, and the heap
top is trimmed whenever enough of it is free. Fresh pages are page-faulted and zeroed on first touch,
so a run's time depends on what the process ran before. Measured on the project's 2-core AMD EPYC VM
(torch 2.13 eager, one thread, a FastViT calibration architecture): 256 px ran at 94 ms with 16.7k page
faults per forward after a 160-px model, and at 60 ms with none after a 384-px one; the PoolFormer-S12
RepMixer-vs-pool reduction at 1024 px measured anywhere from 8 to 30% (docs/LATENCY_MODEL.md).

Runtimes built for inference keep an arena (ONNX Runtime) or plan memory ahead (Core ML, TensorRT);
a serving process is in that warm state too. So before timing on the CPU, archc tells glibc to keep
what is freed: no trimming (``M_TRIM_THRESHOLD``) and no per-tensor mmap (``M_MMAP_MAX`` 0). This
changes the process for its lifetime (glibc has no way to read the settings back), which is what a
process that measures wants; it is a no-op where the C library is not glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import platform
from typing import Optional

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4

_state: Optional[str] = None


def keep_freed_memory() -> str:
    """Make this process keep freed memory (once); returns what the allocator does, for the record."""
    global _state
    if _state is None:
        _state = _configure()
    return _state


def _configure() -> str:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "system default (not glibc: left as it is)"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1) == 1 and libc.mallopt(_M_MMAP_MAX, 0) == 1
    except (OSError, AttributeError):
        ok = False
    return "glibc: freed memory kept (no trim, no mmap)" if ok else "glibc default (mallopt refused)"
