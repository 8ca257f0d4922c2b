"""The export formats and their file suffixes, without torch, so that `archc export --help` lists them fast."""

FORMATS = ("onnx", "torchscript", "exported-program", "coreml")
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "exported-program": ".pt2", "coreml": ".mlpackage"}
