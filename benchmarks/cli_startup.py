"""How long `archc --help`, each `archc CMD --help` and a spec typo's error take: the start-up a user waits for
before anything runs.

    python3 benchmarks/cli_startup.py [--runs 7] [--before DIR]

Each command runs ``--runs`` times in a fresh interpreter (``python3 -m archc ...``), interleaved across
commands; the median and the max are printed per command as a markdown table. ``--before DIR`` times another
checkout of archc (e.g. a ``git worktree`` of an older commit) side by side in the same loop, as a second
column, so the two are compared under the same load. The typo cases give each command that reads a SPEC a copy of
specs/sa12.yaml with two misspelt keys (written to a temporary folder); every one must refuse it with rc 2.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from archc.cli import COMMANDS  # noqa: E402
from archc.machine import cpu_description  # noqa: E402


#: the commands that read a SPEC first (a typo there is the commonest first error)
SPEC_COMMANDS = ("build", "bench", "export", "train", "proxies")


def typo_spec(folder: Path) -> Path:
    text = (ROOT / "specs" / "sa12.yaml").read_text()
    text = text.replace("mixer_kernel: 3", "mixer_kernal: 3").replace("num_classes:", "num_clases:")
    path = folder / "typo.yaml"
    path.write_text(text)
    return path


def once(checkout: Path, argv) -> float:
    env = dict(os.environ, PYTHONPATH=str(checkout))
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "archc", *argv], cwd=checkout, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - t
    if any(a.endswith("typo.yaml") for a in argv) and done.returncode != 2:
        raise SystemExit(f"archc {' '.join(argv)} in {checkout}: rc {done.returncode}, expected 2 (refused)")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--before", type=Path, default=None, help="another archc checkout, timed side by side")
    args = ap.parse_args()
    typo = str(typo_spec(Path(tempfile.mkdtemp(prefix="archc-typo-"))))
    cases = [["--help"]] + [[name, "--help"] for name in COMMANDS] + [[name, typo] for name in SPEC_COMMANDS]
    cases = [c + (["--data", "synthetic"] if c[0] == "train" and c[1] == typo else []) for c in cases]
    checkouts = {"now": ROOT} | ({"before": args.before.resolve()} if args.before else {})
    times = {(c, " ".join(a)): [] for c in checkouts for a in cases}
    for _ in range(args.runs):
        for argv in cases:
            for label, path in checkouts.items():
                times[(label, " ".join(argv))].append(once(path, argv))
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {cpu_description()}; load average "
          f"{os.getloadavg()[0]:.1f}; {args.runs} runs each, interleaved")
    head = "| command | " + " | ".join(f"{c} median s (max)" for c in checkouts) + " |"
    print(head + "\n|---|" + "---:|" * len(checkouts))
    for argv in cases:
        key = " ".join(argv)
        cells = [f"{statistics.median(times[(c, key)]):.2f} ({max(times[(c, key)]):.2f})" for c in checkouts]
        shown = key.replace(typo, "typo.yaml")
        print(f"| archc {shown} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
