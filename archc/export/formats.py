"""The export formats and their file suffixes, without torch, so that `archc export --help` lists them fast."""
from __future__ import annotations

from typing import List, Sequence, Union

from ..errors import ExportError, did_you_mean

FORMATS = ("onnx", "torchscript", "exported-program", "coreml")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "exported-program": ".pt2", "coreml": ".mlpackage"}


def parse_formats(text: Union[str, Sequence[str]]) -> List[str]:
    items = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if not items:
        raise ExportError(f"no export format given; valid: {', '.join(FORMATS)}")
    for it in items:
        if it not in FORMATS:
            raise ExportError(f"unknown export format '{it}'{did_you_mean(it, FORMATS)}; valid: {', '.join(FORMATS)}")
    return list(dict.fromkeys(items))
