"""``archc devices``: the latency profiles ``--target`` can name (built-in and user-calibrated)."""
from __future__ import annotations

from dataclasses import asdict

from . import COMMANDS
from .common import console, print_json, table


def register(sub) -> None:
    p = sub.add_parser("devices", help=COMMANDS["devices"])
    p.add_argument("--features", action="store_true", help="also list the features a profile can use")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..latency import MEASURED_TARGETS
    from ..latency.features import FEATURES
    from ..latency.fit import DERIVED
    import warnings
    from ..latency.predict import available_profiles, invalid_profiles, user_profile_dir
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # listed below instead
        profiles = available_profiles()
    invalid = invalid_profiles()
    if args.json:
        print_json({"profiles": [asdict(p) for p in profiles.values()], "measured_targets": list(MEASURED_TARGETS),
                    "user_profile_dir": str(user_profile_dir()), "invalid": invalid,
                    **({"features": {**FEATURES, **{k: " + ".join(v) for k, v in DERIVED.items()}}} if args.features else {})})
        return 0
    con = console()
    rows = [(p.name, p.source, p.device, p.points, f"{p.heldout_mape_pct:.1f}%", p.created, p.path) for p in profiles.values()]
    con.print(table("latency profiles (predicted; the error is held-out MAPE, k-fold over architectures)",
                    ["name", "source", "device", "points", "held-out MAPE", "created", "path"], rows,
                    right=("points", "held-out MAPE")))
    con.print(f"measured targets: {', '.join(MEASURED_TARGETS)}; user profiles: {user_profile_dir()}")
    for path, why in invalid.items():
        con.print(f"not loaded: {why}")
    if args.features:
        con.print(table("profile features", ["feature", "meaning"],
                        [("const", "1 per inference")] + list(FEATURES.items())
                        + [(k, " + ".join(v)) for k, v in DERIVED.items()]))
    return 0
