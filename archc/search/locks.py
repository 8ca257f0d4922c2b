"""One measurement at a time per device: an exclusive file lock per latency target.

Workers on one machine share ``runs/locks/latency-<target>.lock``; while one measures, the others
wait (building and scoring go on in parallel). Predictions need no lock. The lock is filelock's
``FileLock`` (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on Windows), released by the kernel when a
worker dies, so ``kill -9`` never leaves it held. The holder writes its pid into the file for whoever
wonders who holds it.
"""
from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path
from typing import Iterator, Union

from filelock import FileLock


def lock_path(lock_dir: Union[str, Path], target: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", target)
    return Path(lock_dir) / f"latency-{safe}.lock"


@contextlib.contextmanager
def file_lock(path: Union[str, Path]) -> Iterator[None]:
    """An exclusive lock on ``path`` (created if needed), released when the block ends or the process dies."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(p), thread_local=False):
        yield


@contextlib.contextmanager
def device_lock(lock_dir: Union[str, Path], target: str) -> Iterator[float]:
    """Hold the target's lock; yields the seconds spent waiting for it."""
    path = lock_path(lock_dir, target)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path), thread_local=False)
    start = time.perf_counter()
    with lock:
        waited = time.perf_counter() - start
        with contextlib.suppress(OSError):
            path.write_text(f"{os.getpid()}\n")
        yield waited
