"""Conv geometry shared by the layers and the spec rules (no imports, so both sides can use it)."""
from __future__ import annotations


def conv_padding(kernel: int, stride: int) -> int:
    """Symmetric padding of every strided conv in archc (timm's rule): centres all odd kernels alike,
    so a 1x1 or small branch padded to the large kernel lines up exactly."""
    return (stride - 1 + kernel - 1) // 2


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1
