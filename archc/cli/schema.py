"""``archc schema``: write the JSON Schema of spec files (for editor completion)."""
from __future__ import annotations

import json
from pathlib import Path

from . import COMMANDS


def register(sub) -> None:
    p = sub.add_parser("schema", help=COMMANDS["schema"])
    p.add_argument("-o", "--out", metavar="FILE", help="write to FILE instead of standard output")
    p.add_argument("--json", action="store_true", help="JSON only on stdout: the schema, or with -o "
                   "{\"schema_file\": FILE, \"bytes\": N}")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..spec import spec_json_schema
    text = json.dumps(spec_json_schema(), indent=2) + "\n"
    if args.out:
        from ..outputs import writable_file
        writable_file(args.out, "--out")
        Path(args.out).write_text(text, encoding="utf-8")
        print(json.dumps({"schema_file": args.out, "bytes": len(text.encode())}) if args.json else f"wrote {args.out}")
    else:
        print(text, end="")
    return 0
