"""Workers end with their parent: after kill -9 of the parent, no orphan keeps running (Linux)."""
import os
import signal
import subprocess
import sys
import time

import pytest

PARENT = r'''
import multiprocessing as mp, os, sys, time
def child(parent):
    from archc.process import die_with_parent
    die_with_parent(parent)
    time.sleep(120)
if __name__ == "__main__":
    p = mp.get_context("spawn").Process(target=child, args=(os.getpid(),))
    p.start()
    print(p.pid, flush=True)
    time.sleep(120)
'''


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_dies_with_its_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    time.sleep(1.0)  # the child has armed the signal (it imports archc first)
    os.kill(child, 0)  # alive
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for _ in range(100):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the worker outlived its parent")
