"""This machine, named the way every measured figure must name it: CPU model, cores and the SIMD flags that
change float32 summation order and int8 speed (AVX2, AVX-512, VNNI, AMX)."""
from __future__ import annotations

import os
import platform

#: flags that matter for our figures: float32 kernels (avx2/fma/avx512*), int8 dot products (vnni), AMX
_KEEP = ("avx2", "fma", "avx512", "avx_vnni", "amx")


def _cpuinfo() -> tuple:
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and not model:
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
                if model and flags:
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), or what ``platform`` knows."""
    return _cpuinfo()[0]


def cpu_flags() -> str:
    """The SIMD flags of interest, sorted, space-separated ('' where /proc/cpuinfo is absent)."""
    return " ".join(sorted(f for f in _cpuinfo()[1] if f.startswith(_KEEP)))


def cpu_description() -> str:
    """e.g. 'Intel(R) Xeon(R) Processor, 2 cores; flags: amx_int8 ... avx2 avx512f ... fma'."""
    flags = cpu_flags()
    return f"{cpu_model()}, {os.cpu_count()} cores" + (f"; flags: {flags}" if flags else "")
