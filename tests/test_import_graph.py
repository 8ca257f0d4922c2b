"""Imports run one way (docs/ARCHITECTURE.md): the import graph of ``archc/``, built from the source with every
import counted (top-level and inside functions), has no cycle and no import that runs back up the tiers."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "archc"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(pkg: Path = PKG) -> nx.DiGraph:
    """Module -> module it imports (each edge carries the importing line). Importing ``a.b.c`` from outside
    package ``a.b`` also runs ``a.b``'s ``__init__``, so that edge is added too."""
    files = {module_name(p): p for p in pkg.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(files)
    for mod, path in files.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                while target not in files and "." in target:
                    target = target.rpartition(".")[0]
                if target not in files or target == mod:
                    continue
                graph.add_edge(mod, target, line=f"{path.relative_to(ROOT)}:{node.lineno}")
                parent = target.rpartition(".")[0]
                while parent and parent != "archc" and not (mod + ".").startswith(parent + "."):
                    graph.add_edge(mod, parent, line=f"{path.relative_to(ROOT)}:{node.lineno} (runs {parent})")
                    parent = parent.rpartition(".")[0]
    return graph


def documented_tiers() -> dict:
    """Top-level name -> tier index (0: the foundations), from the ```layers block of docs/ARCHITECTURE.md."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    block = re.search(r"```layers\n(.*?)```", text, re.S)
    assert block, "docs/ARCHITECTURE.md has no ```layers block"
    return {name: i for i, line in enumerate(block.group(1).splitlines()) for name in line.split()}


def top_name(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "archc"


def test_no_import_cycle():
    graph = import_graph()
    cycles = [c for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(sorted(c)) for c in cycles)


def test_imports_follow_the_documented_tiers():
    tiers, graph = documented_tiers(), import_graph()
    unplaced = sorted({top_name(m) for m in graph} - set(tiers))
    assert not unplaced, f"top-level modules missing from docs/ARCHITECTURE.md's layers: {unplaced}"
    upward = [f"{d['line']}: {a} -> {b}" for a, b, d in graph.edges(data=True)
              if tiers[top_name(b)] > tiers[top_name(a)]]
    assert not upward, "imports that run back up the tiers:\n" + "\n".join(sorted(upward))


def test_the_check_catches_a_cycle_and_an_upward_import(tmp_path):
    """The graph sees function-level and relative imports: a planted circle and a planted upward import are found."""
    pkg = tmp_path / "archc"
    (pkg / "spec").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "errors.py").write_text("def f():\n    from .spec import load\n")  # foundation -> spec: upward
    (pkg / "spec" / "__init__.py").write_text("from .load import load\n")
    (pkg / "spec" / "load.py").write_text("from ..errors import f\n\ndef load():\n    from . import rules\n")
    (pkg / "spec" / "rules.py").write_text("from .load import load\n")
    global ROOT
    saved, ROOT = ROOT, tmp_path
    try:
        graph = import_graph(pkg)
    finally:
        ROOT = saved
    assert ("archc.errors", "archc.spec") in graph.edges
    assert {"archc.spec.load", "archc.spec.rules"} <= max(nx.strongly_connected_components(graph), key=len)


MOVED = [("archc.search.space", "archc.space", "load_space"), ("archc.search.space", "archc.space", "SearchSpace"),
         ("archc.proxies.rank", "archc.rankstats", "kendall_tau_b"), ("archc.guards", "archc.limits", "set_limits"),
         ("archc.search.metrics", "archc.threads", "torch_threads"), ("archc.latency.fit", "archc.spec", "arch_key"),
         ("archc.spec.rules", "archc.blocks.geometry", "stage_resolutions"), ("archc.builder", "archc.network", "ArchNet")]


@pytest.mark.parametrize("old, new, name", MOVED)
def test_a_moved_name_stays_importable_from_its_old_path(old, new, name):
    import importlib
    assert getattr(importlib.import_module(old), name) is getattr(importlib.import_module(new), name)
