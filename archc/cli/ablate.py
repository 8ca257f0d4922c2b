"""``archc ablate``: a table like the paper's Table 4 over spec files and/or a grid of overrides.

    archc ablate specs/sa12.yaml --vary stages[2].mixer=repmixer,attention --vary stages[3].mixer=repmixer,attention
    archc ablate specs/ablation_v*.yaml --out runs/table4.csv
"""
from __future__ import annotations

from pathlib import Path

from . import COMMANDS
from .common import add_train_args, console, implied_objective, print_json, table, train_settings


def register(sub) -> None:
    from ..proxies.names import DEFAULT, NAMES
    p = sub.add_parser("ablate", help=COMMANDS["ablate"])
    p.add_argument("specs", nargs="+", metavar="SPEC", help="spec YAML files or shipped model names (each is a row, "
                   "or the base of a grid)")
    p.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2",
                   help="an axis of the grid, e.g. stages[2].mixer=repmixer,attention (repeatable)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key in every row, e.g. --set input_size=224 (repeatable)")
    p.add_argument("--target", default="iphone12pro",
                   help="latency target: a device profile (predicted) or cpu/onnxruntime/... (measured); "
                        "'none' to skip latency (default: %(default)s)")
    p.add_argument("--objective", default=None, metavar="NAME",
                   help="score column: a proxy, or 'train' (brief training, val top-1 %%; see the train options) "
                        f"(default: {DEFAULT}, i.e. M params; proxies: {', '.join(NAMES)}; 'none' to skip), or "
                        "'supernet' (inherited val top-1 %% from --supernet)")
    p.add_argument("--supernet", default=None, metavar="DIR",
                   help="a supernet from `archc supernet train` whose space holds every row (implies --objective "
                        "supernet)")
    p.add_argument("--runs", type=int, default=50, help="measured targets: timed runs per row (default: %(default)s)")
    p.add_argument("--reference", nargs="?", const="published", default=None, metavar="CSV",
                   help="add published figures, matched by spec name: without a value the FastViT table shipped "
                        "in archc/data/reference (published_fastvit.csv), or a CSV file with name, "
                        "iphone12pro_ms, top1 columns")
    p.add_argument("--out", default=None, metavar="CSV", help="also write the table as CSV (a .csv file or a directory)")
    p.add_argument("--markdown-only", action="store_true", help="print only the markdown table")
    p.add_argument("--json", action="store_true", help="print the rows as JSON (nothing else on stdout)")
    add_train_args(p)
    p.set_defaults(func=run)


def _reference_path(value):
    if value == "published" and not Path(value).exists():
        from ..catalog import reference_csv
        return str(reference_csv("published_fastvit.csv"))
    return value


def run(args) -> int:
    from ..proxies import objective_label
    from ..latency.result import MEASURED_TARGETS
    from ..search.ablate import columns, evaluate, grid, markdown, read_reference, table_rows
    from ..search.objective import check_target, make_score_fn
    target = None if args.target in ("none", "") else args.target
    if target:
        check_target(target)
    objective = implied_objective(args)
    if objective is None:
        from ..proxies import DEFAULT
        objective = DEFAULT
    if objective == "none":
        objective = None
    elif objective:
        from ..search.objective import check_objective
        check_objective(objective)
    if args.supernet and objective != "supernet":
        from ..errors import ArchcError
        raise ArchcError(f"--supernet applies to --objective supernet only (objective: {objective})")
    score_fn = make_score_fn(objective, train_settings(args, objective), args.supernet) if objective else None
    if hasattr(score_fn, "prepare"):
        score_fn.prepare()  # a bad --data fails before any row is evaluated
    out_path = None
    if args.out:
        from ..outputs import writable_file
        out = Path(args.out)
        out_path = writable_file(out / "ablation.csv" if out.is_dir() or not out.suffix else out, "--out")
    rows = grid(args.specs, args.vary, args.overrides)
    reference = read_reference(_reference_path(args.reference))
    con = console()
    from .progress import Progress
    weights = None
    if rows and (objective == "train" or target in MEASURED_TARGETS):  # rows cost as their MACs: weigh the ETA
        from ..guards import expected_macs
        weights = [expected_macs(r.spec) for r in rows]
    with Progress("ablate", total=len(rows), weights=weights) as prog:
        prog.update(status=rows[0].label if rows else "")

        def progress(row) -> None:
            prog.advance(f"{row.label}")
        evaluate(rows, target=target, objective=objective, lock_dir=Path("runs/locks"), runs=args.runs,
                 reference=reference, progress=progress, **({"score_fn": score_fn} if score_fn else {}))
    if args.json:
        print_json({"target": target, "objective": objective,
                    "score": objective_label(objective) if objective else None,
                    "rows": [row_dict(r) for r in rows]})
        _write_out(rows, out_path, target, objective, None)
        return 0
    md = markdown(rows, target, objective)
    if not args.markdown_only:
        con.print(table("ablation", columns(rows, target, objective), table_rows(rows, target, objective),
                        right=tuple(columns(rows, target, objective)[1:])))
        graphs = {r.macs_graph for r in rows}
        kinds = "/".join(sorted({r.latency_kind for r in rows}))
        con.print(f"MACs on the {'/'.join(sorted(graphs))} graph at each spec's input size; "
                  + (f"latency {kinds} on {target}" if target else "no latency (--target none)"))
        if any(r.latency_error_pct is not None for r in rows):
            con.print("± held-out: the profile's held-out error for each prediction (k-fold inside its calibration "
                      "data, leave-one-family-out outside it)")
        for r in rows:
            if r.latency_caveats:
                con.print(f"* {r.label}: {'; '.join(r.latency_caveats)}", highlight=False)
        if hasattr(score_fn, "describe"):
            con.print(f"score: {score_fn.describe()}")
        elif hasattr(score_fn, "cfg"):
            con.print(f"score (train): {score_fn.cfg.describe()}")
        con.print("")
    print(md, end="")
    _write_out(rows, out_path, target, objective, None if args.markdown_only else con)
    return 0


def _write_out(rows, path, target, objective, con) -> None:
    if path is not None:
        from ..search.ablate import write_csv
        write_csv(rows, path, target, objective)
        if con is not None:
            con.print(f"wrote {path}")


def row_dict(r) -> dict:
    return {"variant": r.label, "name": r.spec.name, "overrides": list(r.overrides), "params": r.params,
            "macs": r.macs, "macs_graph": r.macs_graph, "latency_ms": r.latency_ms, "latency_kind": r.latency_kind,
            "latency_detail": r.latency_detail, "score": r.score, "published": r.reference or None}
