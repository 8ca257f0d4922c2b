"""Golden text dumps of the train-time graphs of the shipped specs catch unintended changes to what a
spec compiles to: every torch.fx node with its op, target, module settings and inputs.

The dumps live in ``tests/golden/train/<spec>.txt``. After an intended change, regenerate them with

    ARCHC_UPDATE_GOLDEN=1 python -m pytest tests/test_build_golden.py

and review the diff (``git diff tests/golden``) before committing it.
"""
from __future__ import annotations

import difflib
import os
from typing import Any

import pytest
import torch.fx as fx
import torch.nn as nn

import archc
from archc.spec import load_spec

from conftest import ROOT, shipped_specs

GOLDEN = ROOT / "tests" / "golden" / "train"
UPDATE = os.environ.get("ARCHC_UPDATE_GOLDEN") == "1"


def _arg(a: Any) -> str:
    if isinstance(a, fx.Node):
        return a.name
    if isinstance(a, (list, tuple)):
        inner = ", ".join(_arg(x) for x in a)
        return f"[{inner}]" if isinstance(a, list) else f"({inner}{',' if len(a) == 1 else ''})"
    if isinstance(a, dict):
        return "{" + ", ".join(f"{k}: {_arg(v)}" for k, v in a.items()) + "}"
    if isinstance(a, float):
        return repr(round(a, 10))
    return repr(a)


def _target(node: fx.Node, modules: dict) -> str:
    if node.op == "call_module":
        mod: nn.Module = modules[str(node.target)]
        return f"{node.target}: {type(mod).__name__}({mod.extra_repr()})"
    if node.op == "call_function":
        fn = node.target
        return f"{getattr(fn, '__module__', None) or ''}.{getattr(fn, '__name__', str(fn))}".lstrip(".")
    return str(node.target)


def dump_graph(gm: fx.GraphModule) -> str:
    """One line per node: ``name = op target(args, kwargs)``; stable across runs, readable in a diff."""
    modules = dict(gm.named_modules())
    lines = []
    for n in gm.graph.nodes:
        args = ", ".join([_arg(a) for a in n.args] + [f"{k}={_arg(v)}" for k, v in n.kwargs.items()])
        lines.append(f"{n.name} = {n.op} {_target(n, modules)}({args})")
    return "\n".join(lines) + "\n"


def golden_text(path) -> str:
    spec = load_spec(path)
    gm = fx.symbolic_trace(archc.build(spec))
    params = sum(p.numel() for p in gm.parameters())
    header = (f"# {spec.name} ({path.relative_to(ROOT)}): train-time graph (torch.fx), {len(gm.graph.nodes)} nodes, "
              f"{params} parameters\n# regenerate: ARCHC_UPDATE_GOLDEN=1 python -m pytest tests/test_build_golden.py\n")
    return header + dump_graph(gm)


@pytest.mark.parametrize("path", shipped_specs(), ids=lambda p: p.stem)
def test_train_graph_matches_golden(path):
    text = golden_text(path)
    target = GOLDEN / f"{path.stem}.txt"
    if UPDATE or not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        if not UPDATE:
            pytest.fail(f"{target} did not exist; wrote it. Review and commit it, then rerun.")
        return
    expected = target.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(list(difflib.unified_diff(expected.splitlines(True), text.splitlines(True),
                                                 str(target), "now", n=1))[:60])
        pytest.fail(f"train graph of {path.name} changed (ARCHC_UPDATE_GOLDEN=1 to accept):\n{diff}")


def test_golden_dump_sees_a_change():
    """The dump is sensitive to what matters: a kernel size and the wiring of a residual."""
    spec = load_spec(shipped_specs()[0])
    base = dump_graph(fx.symbolic_trace(archc.build(spec)))
    changed = dump_graph(fx.symbolic_trace(archc.build(load_spec(spec, ["stages[0].ffn_kernel=5"]))))
    assert base != changed
    gm = fx.symbolic_trace(archc.build(spec))
    add = next(n for n in gm.graph.nodes if n.op == "call_function" and n.target.__name__ == "add")
    add.args = (add.args[1], add.args[0])
    gm.recompile()
    assert dump_graph(gm) != base


def test_no_stale_golden_files():
    names = {p.stem for p in shipped_specs()}
    stale = sorted(p.name for p in GOLDEN.glob("*.txt") if p.stem not in names)
    assert not stale, f"golden dumps without a spec: {stale} (delete them)"


