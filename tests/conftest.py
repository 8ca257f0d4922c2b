"""Shared fixtures. Reference data lives in ../shared beside the checkout; tests that need it skip
with a reason where it is absent, and the rest of the suite stands on data the tests make."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "specs"
SHARED = Path(os.environ.get("ARCHC_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "reference"

# one thread: on a loaded 2-core machine two threads per test run 10-100x slower (measured)
torch.set_num_threads(1)

# the tests see the built-in profiles only: a developer's own calibrations (~/.config/archc/profiles, hundreds of
# KB each) must neither change what a test predicts nor slow it down; tests that need a user folder set their own
if "ARCHC_PROFILES" not in os.environ:
    import tempfile
    os.environ["ARCHC_PROFILES"] = tempfile.mkdtemp(prefix="archc-test-profiles-")


#: deeper MobileOne/PoolFormer/MCi variants: test_timm_parity lowers each at its own size (marked slow); the
#: per-spec loops of other tests use S0, S12 and MCi0 for these kinds to keep the suite short
PARITY_DEEP = {"mobileone_s1", "mobileone_s2", "mobileone_s3", "mobileone_s4", "poolformer_s24", "poolformer_s36",
               "poolformer_m36", "poolformer_m48", "fastvit_mci1", "fastvit_mci2"}


def shipped_specs():
    return sorted(SPECS.glob("*.yaml"))


@pytest.fixture
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip(f"reference data not found at {REFERENCE} (set ARCHC_SHARED)")
    return REFERENCE


def reference_file(rel: str) -> Path:
    p = REFERENCE / rel
    if not p.is_file():
        pytest.skip(f"reference file {p} not present")
    return p


def own_flat_keys(stage: dict) -> dict:
    """``stage`` without the flat mixer keys (head_dim, pool_size, ...) its mixer does not take, nor the stage
    keys it does not read (a mobileone stage's FFN keys): generators draw every key, and such a key is an
    error (tests/test_spec_load.py)."""
    from archc.blocks import MIXERS
    from archc.spec.model import StageSpec
    mixer = stage.get("mixer")
    kind = mixer.get("type") if isinstance(mixer, dict) else mixer
    takes = MIXERS[kind].search_keys if kind in MIXERS else {}
    unused = MIXERS[kind].unused_keys if kind in MIXERS else ()
    return {k: v for k, v in stage.items() if (k not in StageSpec.flat_keys() or k in takes) and k not in unused}


class _FullDisk:
    """A file whose writes fail as a full disk's do, after a few bytes reached it (a half-written file)."""

    def __init__(self, f):
        self.f = f

    def write(self, data) -> int:
        self.f.write(bytes(data)[:8])
        self.f.flush()
        import errno
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


@pytest.fixture
def full_disk(monkeypatch):
    """Every file archc.outputs writes (atomic writers, the --out probe) meets a full disk. Simulated: a test
    never points a writer at a device node (an atomic rename would replace it)."""
    import builtins
    from archc import outputs

    def full_open(path, mode="r", *args, **kwargs):
        f = builtins.open(path, mode, *args, **kwargs)
        return _FullDisk(f) if any(c in mode for c in "wax") else f

    monkeypatch.setattr(outputs, "open", full_open, raising=False)
