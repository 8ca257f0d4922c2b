"""Ablations like the paper's Table 4: a grid of spec overrides (or a list of spec files) measured
side by side: params, MACs, latency (measured or predicted) and a proxy score.

``--vary stages[2].mixer=repmixer,attention`` gives one axis; several ``--vary`` make a grid (their
Cartesian product). Values are YAML scalars separated by commas outside brackets, so
``--vary 'input_size=[224,224],[256,256]'`` has two values.
"""
from __future__ import annotations

import csv
import io
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import yaml

from ..errors import SpecError
from ..latency import resolve_target
from ..spec import Spec, load_spec, parse_key_path
from ..threads import torch_threads
from .metrics import spec_metrics
from .objective import default_latency, default_score, latency_of


@dataclass
class AblationRow:
    label: str               # the spec file and the overrides that make this row
    spec: Spec
    overrides: Tuple[str, ...]
    params: int = 0
    macs: int = 0
    macs_graph: str = ""
    latency_ms: Optional[float] = None
    latency_kind: str = ""
    latency_detail: str = ""
    latency_error_pct: Optional[float] = None  # predicted: the profile's held-out error for this row
    latency_caveats: Tuple[str, ...] = ()
    score: Optional[float] = None
    reference: Dict[str, str] = field(default_factory=dict)


def split_values(text: str) -> List[str]:
    """Split on commas that are not inside [] or {} (``[224,224],[256,256]`` -> two values)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [v.strip() for v in out]


def parse_vary(text: str) -> Tuple[str, List[str]]:
    """``stages[2].mixer=repmixer,attention`` -> (``stages[2].mixer``, [``repmixer``, ``attention``])."""
    if "=" not in text:
        raise SpecError(f"--vary '{text}' must look like key.path=value1,value2")
    key, raw = text.split("=", 1)
    key = key.strip()
    parse_key_path(key)  # a malformed path is a SpecError naming it
    values = split_values(raw)
    if not raw.strip() or any(v == "" for v in values):
        raise SpecError(f"--vary '{text}': empty value; give values separated by commas")
    for v in values:
        try:
            yaml.safe_load(v)
        except yaml.YAMLError:
            raise SpecError(f"--vary '{text}': cannot read value '{v}'") from None
    if len(set(values)) != len(values):
        raise SpecError(f"--vary '{text}': a value is listed twice")
    return key, values


def grid(specs: Sequence[str], varies: Sequence[str], common: Sequence[str] = ()) -> List[AblationRow]:
    """One row per spec file x point of the override grid; every spec is loaded (and checked) here. An archc
    checkpoint stands for the spec it stores (a row's latency and size do not depend on its weights)."""
    from ..catalog import is_checkpoint_path
    from ..weights import checkpoint_spec
    axes = [parse_vary(v) for v in varies]
    rows: List[AblationRow] = []
    for path in specs:
        source = checkpoint_spec(path)["spec"] if is_checkpoint_path(path) else path
        for combo in itertools.product(*[[f"{k}={v}" for v in vals] for k, vals in axes]):
            overrides = tuple(common) + tuple(combo)
            spec = load_spec(source, overrides=list(overrides) or None)
            if not combo:
                label = Path(path).stem
            elif len(specs) == 1:
                label = " ".join(combo)
            else:
                label = f"{Path(path).stem}: {' '.join(combo)}"
            rows.append(AblationRow(label=label, spec=spec, overrides=tuple(combo)))
    return rows


def read_reference(path: Optional[str]) -> Dict[str, Dict[str, str]]:
    """Published figures by spec name (e.g. ../shared/reference/published_fastvit.csv)."""
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        raise SpecError("reference file not found", file=str(path))
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read reference CSV: {exc}", file=str(path)) from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    reader = csv.DictReader(lines)
    columns = list(reader.fieldnames or [])
    if "name" not in columns:
        raise SpecError(f"reference CSV has no 'name' column (it names each row's spec); columns: "
                        f"{', '.join(map(repr, columns)) or 'none'}", file=str(path))
    return {r["name"]: r for r in reader}


def evaluate(rows: List[AblationRow], *, target: Optional[str], objective: Optional[str], lock_dir: Path,
             runs: int = 50, warmup: int = 10, reference: Optional[Dict[str, Dict[str, str]]] = None,
             latency_fn: Callable[..., Any] = default_latency,
             score_fn: Callable[[Spec, str], float] = default_score,
             progress: Optional[Callable[[AblationRow], None]] = None) -> List[AblationRow]:
    """Fill each row's params, MACs, latency and score (in place; returned for convenience)."""
    target = resolve_target(target) if target else None  # once for every row
    for row in rows:
        with torch_threads(1):
            m = spec_metrics(row.spec)
        row.params, row.macs, row.macs_graph = m.params, m.macs, m.graph
        if target:
            with torch_threads(1):  # as in the search; a measured result records its threads
                lat = latency_of(row.spec, target, lock_dir=lock_dir, runs=runs, warmup=warmup,
                                 latency_fn=latency_fn)
            row.latency_ms, row.latency_kind, row.latency_detail = lat.ms, lat.kind, lat.describe()
            if lat.kind == "predicted":
                row.latency_error_pct, row.latency_caveats = lat.expected_error_pct, tuple(lat.caveats)
        if objective:
            with torch_threads(1):
                row.score = float(score_fn(row.spec, objective))
        if reference:
            row.reference = reference.get(row.spec.name, {})
        if progress:
            progress(row)
    return rows


def columns(rows: List[AblationRow], target: Optional[str], objective: Optional[str]) -> List[str]:
    cols = ["variant", "params (M)", "MACs (G)"]
    if target:
        kind = rows[0].latency_kind if rows else ""
        cols.append(f"latency {target} (ms, {kind})")
        if any(r.latency_error_pct is not None for r in rows):
            cols.append("± held-out")
    if objective:
        cols.append("score (params, M)" if objective == "params" else f"score ({objective})")
    if any(r.reference for r in rows):
        cols += ["published ms", "published top-1"]
    return cols


def table_rows(rows: List[AblationRow], target: Optional[str], objective: Optional[str]) -> List[List[str]]:
    out = []
    with_ref = any(r.reference for r in rows)
    for r in rows:
        line = [r.label, f"{r.params / 1e6:.2f}", f"{r.macs / 1e9:.3f}"]
        if target:
            line.append("-" if r.latency_ms is None else f"{r.latency_ms:.3f}")
            if any(x.latency_error_pct is not None for x in rows):
                line.append("-" if r.latency_error_pct is None else
                            f"±{r.latency_error_pct:.1f}%" + ("*" if r.latency_caveats else ""))
        if objective:
            line.append("-" if r.score is None else f"{r.score:.5g}")
        if with_ref:
            line += [r.reference.get("iphone12pro_ms", "") or "-", r.reference.get("top1", "") or "-"]
        out.append(line)
    return out


def markdown(rows: List[AblationRow], target: Optional[str], objective: Optional[str]) -> str:
    cols = columns(rows, target, objective)
    body = table_rows(rows, target, objective)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" if i < 1 else "---:" for i in range(len(cols))) + "|"]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in body]
    return "\n".join(lines) + "\n"


def write_csv(rows: List[AblationRow], path: Path, target: Optional[str], objective: Optional[str]) -> Path:
    from ..outputs import atomic_write_text
    f = io.StringIO(newline="")
    w = csv.writer(f)
    w.writerow(["variant", "name", "overrides", "params", "macs", "macs_graph", "target", "latency_ms",
                "latency_kind", "latency_error_pct", "objective", "score", "published_ms", "published_top1"])
    for r in rows:
        w.writerow([r.label, r.spec.name, " ".join(r.overrides), r.params, r.macs, r.macs_graph, target or "",
                    "" if r.latency_ms is None else r.latency_ms, r.latency_kind,
                    "" if r.latency_error_pct is None else r.latency_error_pct, objective or "",
                    "" if r.score is None else r.score, r.reference.get("iphone12pro_ms", ""),
                    r.reference.get("top1", "")])
    return atomic_write_text(path, f.getvalue(), "--out")
