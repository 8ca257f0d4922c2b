"""Export the deploy graph (ONNX, TorchScript, torch.export, Core ML), each file verified where this OS can.

``export_model`` writes the requested formats and checks every one against the torch model it came from:
ONNX through ONNX Runtime, TorchScript and ExportedProgram by reloading the file, Core ML by reading
the package back (spec + MIL program: op histogram, no batch_norm, no residual add the pass removed)
and, on macOS, by predicting. Failures are ``ExportError``.

The names import on first use (``archc.lazy``): ``writer`` holds ``export_model`` and its helpers, ``formats``
the format names (no torch), so ``archc export --help`` lists them fast.
"""
from ..lazy import lazy_attributes
from .formats import FORMATS, SUFFIX

__getattr__, __dir__ = lazy_attributes(__name__, {}, globals(), default="writer")
