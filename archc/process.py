"""Worker processes that end with their parent: a kill -9 of a search or a benchmark leaves no orphans.

Linux's ``prctl(PR_SET_PDEATHSIG)`` has the kernel send the worker SIGTERM the moment its parent dies, even
in the middle of a trial (the trial's heartbeat then goes stale and the study retries it). Elsewhere the
callers' own checks of ``os.getppid()`` between trials remain the fallback.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> bool:
    """Ask the kernel to SIGTERM this process when its parent dies; True where that is in force. ``parent``
    is the pid the caller expects: if it is already gone (it died before this ran), exit at once."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:
        os._exit(1)
    return armed
