"""``archc build SPEC``: compile a spec, optionally load weights and lower it, and print its cost."""
from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from . import COMMANDS
from .common import add_input_size_arg, add_spec_args, console, human, load_from_args, print_json, table

if TYPE_CHECKING:  # torch-heavy: imported where the command runs, so `archc --help` stays fast
    from ..analysis.cost import CostReport
    from ..analysis.memory import MemoryTraffic


def register(sub) -> None:
    p = sub.add_parser("build", help=COMMANDS["build"],
                       description="Compile a spec (a YAML file, a shipped model name such as fastvit_sa12, or an "
                                   "archc checkpoint FILE.pt, which stores its spec) and print its cost per stage.")
    add_spec_args(p, checkpoints=True)
    add_input_size_arg(p)
    p.add_argument("--weights", metavar="FILE", help="load a timm, Apple ml-fastvit or archc checkpoint (strict); "
                   "reparameterized checkpoints need --deploy")
    p.add_argument("--deploy", action="store_true", help="lower to the deploy graph (reparameterize), verify "
                   "it against the train graph and print before/after")
    p.add_argument("--save", metavar="FILE", help="save the model (train or deploy) with its spec in archc's format")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.save:
        from ..outputs import writable_file
        writable_file(args.save, "--save")
    spec = load_from_args(args.spec, args)  # before torch loads: a spec's mistakes are reported in a moment
    from ..analysis.cost import cost_report
    from ..analysis.memory import memory_traffic
    from ..analysis.profile import example_input, profile_graph
    from ..builder import build
    from ..deploy import deploy_model
    from ..weights import load_weights, save_weights
    if str(args.spec) in getattr(args, "checkpoints", {}):  # archc build FILE.pt: its spec, weights, graph
        args.weights = args.spec
        args.deploy = bool(args.deploy or args.checkpoints[str(args.spec)])
    x = example_input(spec.input_size, spec.in_chans)
    train = build(spec).eval()
    fmt: Optional[str] = None
    deploy = None
    if args.deploy:
        deploy = deploy_model(spec, args.weights)
        fmt = getattr(deploy, "weights_format", None)
        if args.weights and "reparameterized" not in (fmt or "") and fmt != "archc":
            load_weights(train, args.weights)
    elif args.weights:
        fmt = load_weights(train, args.weights)
    train_prof = profile_graph(train, x)
    train_report = cost_report(train, spec, profile=train_prof)
    out = {"spec": args.spec, "name": spec.name, "train": _with_memory(train_report, memory_traffic(train_prof))}
    if deploy is not None:
        dep_prof = profile_graph(deploy, x)
        dep_report = cost_report(deploy, spec, profile=dep_prof)
        out["deploy"] = _with_memory(dep_report, memory_traffic(dep_prof))
        eq = deploy.equivalence
        out["equivalence"] = eq.to_dict() if eq is not None else None
    if args.save:
        save_weights(deploy if deploy is not None else train, args.save, spec=spec, deploy=deploy is not None)
    if fmt:
        out["weights"] = {"file": args.weights, "format": fmt}
    if args.json:
        print_json(out)
        return 0
    con = console()
    if deploy is None:
        print_report(train_report, f"{spec.name} ({args.spec}), train-time graph")
    else:
        print_report(dep_report, f"{spec.name} ({args.spec}), deploy graph")
        print_before_after(out["train"], out["deploy"])
        con.print(deploy.equivalence.describe() if deploy.equivalence is not None else
                  "equivalence not checked: the checkpoint holds only the deploy graph (no train graph to compare)")
    if fmt:
        con.print(f"loaded {args.weights} ({fmt} format, strict)")
    if args.save:
        con.print(f"saved {args.save} (archc format, {'deploy' if deploy is not None else 'train'} graph)")
    return 0


def _with_memory(report: CostReport, traffic: MemoryTraffic) -> dict:
    d = report.to_dict()
    d["memory"] = traffic.to_dict()
    return d


def print_report(report: CostReport, title: str) -> None:
    rows = [(r.part, r.resolution, r.tokens, r.width, r.depth, r.mixer, human(r.params), human(r.macs))
            for r in report.rows]
    rows.append(("total", f"{report.input_size[0]}x{report.input_size[1]}", None, None,
                 None, None, human(report.params), human(report.macs)))
    con = console()
    con.print(table(title, ["part", "resolution", "tokens", "width", "depth", "mixer", "params", "MACs"], rows,
                    right=("tokens", "width", "depth", "params", "MACs")))
    con.print(f"params {report.params:,}  MACs {report.macs:,}  residual adds {report.residual_adds}")


def print_before_after(train: dict, deploy: dict) -> None:
    """The paper's argument made visible: fewer ops, fewer skip adds, fewer bytes moved."""
    def row(label, a, b, fmt=human):
        ratio = f"{b / a:.2f}x" if a else ""
        return (label, fmt(a), fmt(b), ratio)
    kinds = sorted(set(train["ops"]) | set(deploy["ops"]))
    rows = [row(f"ops: {k}", train["ops"].get(k, 0), deploy["ops"].get(k, 0), str) for k in kinds]
    rows.append(row("ops: total", sum(train["ops"].values()), sum(deploy["ops"].values()), str))
    rows.append(row("residual adds", train["residual_adds"], deploy["residual_adds"], str))
    rows.append(row("params", train["params"], deploy["params"]))
    rows.append(row("MACs", train["macs"], deploy["macs"]))
    tm, dm = train["memory"], deploy["memory"]
    rows.append(row("activation bytes read", tm["activation_bytes_read"], dm["activation_bytes_read"],
                    lambda v: human(v, "B")))
    rows.append(row("activation bytes written", tm["activation_bytes_written"], dm["activation_bytes_written"],
                    lambda v: human(v, "B")))
    rows.append(row("weight bytes read", tm["weight_bytes_read"], dm["weight_bytes_read"], lambda v: human(v, "B")))
    rows.append(row("peak live activations", tm["peak_live_activation_bytes"], dm["peak_live_activation_bytes"],
                    lambda v: human(v, "B")))
    console().print(table("train -> deploy (batch 1)", ["", "train", "deploy", "deploy/train"], rows,
                          right=("train", "deploy", "deploy/train")))
