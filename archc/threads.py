"""torch's intra-op thread count, set for a block and restored after it: one helper for every caller
(latency measurement, graph passes, training, search workers)."""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch


@contextlib.contextmanager
def torch_threads(n: Optional[int]) -> Iterator[None]:
    """Run with ``n`` intra-op threads (None or 0: leave the count as it is), restoring the old count after.

    Batch-1 graph passes, profiling and timing run faster and steadier on one thread, and two threads per
    process on a busy 2-core machine can make a train step 13x slower (measured; docs/BENCHMARKS.md)."""
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
