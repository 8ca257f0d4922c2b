"""How well each proxy ranks the published FastViT points: Kendall tau-b and Spearman rho vs top-1.

The points are the rows of ``published_fastvit.csv`` (seven variants and the Table 4 ablations; V4 is
S12 and V5 is SA12 architecturally, so they get identical proxy scores and count as ties in the
proxy's ranking, which tau-b handles). Every proxy runs on the same seeded weights and inputs.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from ..errors import ArchcError
from ..rankstats import kendall_tau_b, spearman_rho
from ..spec import arch_key

CSV_NAME = "published_fastvit.csv"


@dataclass
class PublishedPoint:
    name: str
    spec_path: str
    top1: float
    iphone12pro_ms: float


@dataclass
class ProxyEval:
    proxy: str
    kendall_tau: float
    spearman_rho: float
    seconds: float
    scores: Dict[str, float] = field(default_factory=dict)


def default_csv() -> Path:
    """The table shipped in ``archc/data/reference`` (a copy of shared/reference's), so --eval works anywhere."""
    from ..catalog import reference_csv
    return reference_csv(CSV_NAME)


def spec_for(name: str, specs_dir: Optional[Path]) -> Path:
    """A published point's spec: the shipped spec of that model name (``fastvit_t8``, ``ablation_v1``), or
    with ``specs_dir`` the file there (``fastvit_t8`` -> ``DIR/t8.yaml``, ``ablation_v1`` -> ``DIR/ablation_v1.yaml``)."""
    if specs_dir is None:
        from ..catalog import model_index
        return model_index().get(name, Path(f"<no shipped model '{name}'>"))
    stem = name[len("fastvit_"):] if name.startswith("fastvit_") else name
    return Path(specs_dir) / f"{stem}.yaml"


def read_published(csv_path: Path, specs_dir: Optional[Path] = None) -> List[PublishedPoint]:
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise ArchcError(f"{csv_path}: published figures not found (pass --csv FILE)")
    lines = [l for l in csv_path.read_text().splitlines() if l.strip() and not l.lstrip().startswith("#")]
    rows = list(csv.DictReader(lines))
    need = {"name", "top1", "iphone12pro_ms"}
    if not rows or not need <= set(rows[0]):
        raise ArchcError(f"{csv_path}: expected columns {', '.join(sorted(need))}")
    out = []
    for r in rows:
        spec = spec_for(r["name"], specs_dir)
        if not spec.is_file():
            raise ArchcError(f"{csv_path}: row '{r['name']}': no spec {spec} (pass --specs-dir DIR)")
        out.append(PublishedPoint(r["name"], str(spec), float(r["top1"]), float(r["iphone12pro_ms"])))
    return out


def evaluate(points: Sequence[PublishedPoint], proxies: Sequence[str], *, seed: int = 0,
             batch: Optional[int] = None, resolution: Optional[int] = None,
             progress: Optional[Callable[[str, str], None]] = None) -> List[ProxyEval]:
    """Score every point with every proxy; rank-correlate the scores with the published top-1."""
    from ..spec import load_spec
    from . import score
    specs = {p.name: load_spec(p.spec_path) for p in points}
    keys = {name: arch_key(s, None) for name, s in specs.items()}
    top1 = [p.top1 for p in points]
    results = []
    for proxy in proxies:
        t0 = time.perf_counter()
        by_arch: Dict[str, float] = {}
        scores: Dict[str, float] = {}
        for p in points:
            if progress:
                progress(proxy, p.name)
            k = keys[p.name]
            if k not in by_arch:  # same architecture, same seed: the same score (V4 = S12, V5 = SA12)
                by_arch[k] = score(specs[p.name], proxy, seed=seed, batch=batch, resolution=resolution)
            scores[p.name] = by_arch[k]
        vals = [scores[p.name] for p in points]
        results.append(ProxyEval(proxy, kendall_tau_b(vals, top1), spearman_rho(vals, top1),
                                 time.perf_counter() - t0, scores))
    return results
