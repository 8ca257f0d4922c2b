"""``archc models [PATTERN]``: the shipped models by name (what ``archc build NAME`` and ``base: NAME`` take)."""
from __future__ import annotations

from ..catalog import DATA_DIR, list_models, model_index
from . import COMMANDS
from .common import console, print_json, table


def _abbrev(mixer: str) -> str:
    from ..blocks import MIXERS
    try:
        return MIXERS.abbrev(mixer)
    except Exception:  # a kind without an abbreviation: its name
        return mixer


def register(sub) -> None:
    p = sub.add_parser("models", help=COMMANDS["models"],
                       description="List the shipped models: their names (timm's, where timm has the model), "
                                   "input size, stage layout and spec file.")
    p.add_argument("pattern", nargs="?", default="*", metavar="PATTERN",
                   help="shell-style pattern, e.g. 'fastvit*' (default: all)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _describe(name: str) -> dict:
    from ..spec import load_spec
    path = model_index()[name]
    spec = load_spec(path)
    out = {"name": name, "spec": str(path.relative_to(DATA_DIR)), "input_size": list(spec.input_size),
           "num_classes": spec.num_classes}
    for key in ("depths", "widths", "mixers"):  # stage summaries, where the spec's stages have them
        try:
            out[key] = list(getattr(spec, key))
        except (AttributeError, TypeError):
            pass
    return out


def run(args) -> int:
    rows = [_describe(n) for n in list_models(args.pattern)]
    if args.json:
        print_json({"pattern": args.pattern, "models": rows})
        return 0
    con = console()
    if not rows:
        con.print(f"no shipped model matches '{args.pattern}'")
        return 0
    con.print(table(f"shipped models matching '{args.pattern}'", ["name", "input", "depths", "widths", "mixers", "spec"],
                    [(r["name"], "x".join(map(str, r["input_size"])), ",".join(map(str, r.get("depths", []))),
                      ",".join(map(str, r.get("widths", []))), "-".join(_abbrev(m) for m in r.get("mixers", [])),
                      "archc/data/" + r["spec"]) for r in rows]), soft_wrap=True)
    con.print("build one with `archc build NAME`, inherit from one with `base: NAME`, or in Python "
              "`archc.create_model(NAME)`")
    return 0
