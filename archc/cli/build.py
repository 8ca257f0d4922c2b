"""``archc build SPEC``: compile a spec, optionally load weights, and print its cost per stage."""
from __future__ import annotations

from typing import Optional

from ..analysis.cost import CostReport, cost_report
from ..builder import build
from ..weights import load_weights, save_weights
from .common import add_input_size_arg, add_spec_args, console, human, load_from_args, print_json, table


def register(sub) -> None:
    p = sub.add_parser("build", help="compile a spec to a PyTorch model and print its cost per stage")
    add_spec_args(p)
    add_input_size_arg(p)
    p.add_argument("--weights", metavar="FILE", help="load a timm, Apple ml-fastvit or archc checkpoint (strict)")
    p.add_argument("--save", metavar="FILE", help="save the model (and its spec) in archc's checkpoint format")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    spec = load_from_args(args.spec, args)
    model = build(spec).eval()
    fmt: Optional[str] = None
    if args.weights:
        fmt = load_weights(model, args.weights)
    report = cost_report(model, spec)
    if args.save:
        save_weights(model, args.save, spec=spec)
    if args.json:
        out = {"spec": args.spec, "name": spec.name, "train": report.to_dict()}
        if fmt:
            out["weights"] = {"file": args.weights, "format": fmt}
        print_json(out)
        return 0
    print_report(report, f"{spec.name} ({args.spec}), train-time graph")
    con = console()
    if fmt:
        con.print(f"loaded {args.weights} ({fmt} format, strict)")
    if args.save:
        con.print(f"saved {args.save} (archc format)")
    return 0


def print_report(report: CostReport, title: str) -> None:
    rows = [(r.part, r.resolution, r.tokens, r.width, r.depth, r.mixer, human(r.params), human(r.macs))
            for r in report.rows]
    rows.append(("total", f"{report.input_size[0]}x{report.input_size[1]}", None, None,
                 None, None, human(report.params), human(report.macs)))
    con = console()
    con.print(table(title, ["part", "resolution", "tokens", "width", "depth", "mixer", "params", "MACs"], rows,
                    right=("tokens", "width", "depth", "params", "MACs")))
    con.print(f"params {report.params:,}  MACs {report.macs:,}  activation+weight bytes moved "
              f"{human(report.bytes_moved, 'B')}  residual adds {report.residual_adds}")
