"""Core ML export: an ML program (iOS 16+) with a named RGB image input, validated on any OS.

Image preprocessing is exact ImageNet normalisation, split where each part is exact:
Core ML's ``ImageType`` computes ``scale * pixel + bias[c]`` with one scalar scale, so it takes
``pixel / 255 - mean[c]``; the graph then multiplies by ``1 / std[c]`` (a per-channel scale commutes with
the first conv's zero padding, so Core ML may fold it into that conv without error). Both mean and std are
configurable (``ImageNormalization``), or off (the model then sees ``pixel / 255``).

coremltools converts on Linux but predicts only on macOS: ``inspect_coreml`` validates a package anywhere
(loads its spec and its MIL program, op histogram, residual adds); ``predict_coreml`` needs macOS.
"""
from __future__ import annotations

import contextlib
import io
import platform
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from ..errors import DeviceError, ExportError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_SPEC_VERSION = 7  # Core ML specification version of iOS 16 / macOS 13


@dataclass(frozen=True)
class ImageNormalization:
    """What the image input does to 0..255 RGB pixels before the network: ``(pixel / 255 - mean) / std``."""

    mean: Tuple[float, ...] = IMAGENET_MEAN
    std: Tuple[float, ...] = IMAGENET_STD

    def apply(self, pixels01: torch.Tensor) -> torch.Tensor:
        """The same transform in torch, on pixels already divided by 255 (NCHW)."""
        mean = torch.tensor(self.mean, dtype=pixels01.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=pixels01.dtype).view(1, -1, 1, 1)
        return (pixels01 - mean) / std

    def describe(self) -> str:
        fmt = lambda v: ",".join(f"{x:g}" for x in v)  # noqa: E731
        return f"RGB pixels 0..255 -> (pixel/255 - mean) / std, mean={fmt(self.mean)}, std={fmt(self.std)}"


NO_NORMALIZATION = ImageNormalization(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


class _InvStd(nn.Module):
    """``model(x * (1/std))``: the per-channel half of the normalisation, inside the converted graph."""

    def __init__(self, model: nn.Module, std: Sequence[float]):
        super().__init__()
        self.model = model
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * self.inv_std)


def convert_coreml(model: nn.Module, example: torch.Tensor, path: Union[str, Path], *, fp32: bool = False,
                   normalization: Optional[ImageNormalization] = ImageNormalization(),
                   description: str = "", metadata: Optional[Dict[str, str]] = None,
                   class_labels: Optional[Sequence[str]] = None) -> Path:
    """Convert the eval-mode ``model`` to ``path`` (``.mlpackage``): ML program, iOS 16, FP16 unless ``fp32``,
    image input ``image`` (RGB, the example's batch and size), tensor output ``logits``.

    With ``class_labels`` the package is a Core ML classifier (Vision's ``VNClassificationObservation``):
    outputs ``classLabel`` and ``probabilities`` (a softmax is added). ``metadata`` keys ``author``,
    ``version`` and ``license`` fill Core ML's own fields; the rest go to the user-defined metadata."""
    from .ct_import import import_coremltools
    ct = import_coremltools(ExportError, "Core ML export")
    from .torchscript_export import trace

    norm = normalization or NO_NORMALIZATION
    if len(norm.mean) != example.shape[1] or len(norm.std) != example.shape[1]:
        raise ExportError(f"image normalisation has {len(norm.mean)} means and {len(norm.std)} stds; the model "
                          f"takes {example.shape[1]} channels")
    if example.shape[1] not in (1, 3):
        raise ExportError(f"a Core ML image input needs 1 (grayscale) or 3 (RGB) channels; the model takes "
                          f"{example.shape[1]}")
    wrapped = _InvStd(model.eval(), norm.std) if any(s != 1.0 for s in norm.std) else model.eval()
    classifier = None
    if class_labels is not None:
        labels = [str(c) for c in class_labels]
        with torch.no_grad():
            n_out = int(model.eval()(example).shape[-1])
        if len(labels) != n_out:
            raise ExportError(f"{len(labels)} class labels for a model with {n_out} outputs")
        wrapped = nn.Sequential(wrapped, nn.Softmax(dim=-1)).eval()
        classifier = ct.ClassifierConfig(labels, predicted_feature_name="classLabel")
    traced = trace(wrapped, example)
    layout = ct.colorlayout.RGB if example.shape[1] == 3 else ct.colorlayout.GRAYSCALE
    bias = [-m for m in norm.mean] if example.shape[1] == 3 else -norm.mean[0]
    image = ct.ImageType(name="image", shape=tuple(example.shape), scale=1.0 / 255.0, bias=bias, color_layout=layout)
    try:
        # coremltools prints progress bars (tqdm, to stderr) for every pass; the caller reports progress
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            mlmodel = ct.convert(traced, source="pytorch", inputs=[image],
                                 outputs=[ct.TensorType(name="probabilities" if classifier else "logits")],
                                 classifier_config=classifier,
                                 convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16,
                                 compute_precision=ct.precision.FLOAT32 if fp32 else ct.precision.FLOAT16)
    except Exception as exc:
        raise ExportError(f"Core ML conversion failed: {type(exc).__name__}: {exc}") from exc
    mlmodel.short_description = description or "archc deploy graph"
    mlmodel.input_description["image"] = norm.describe()
    for out in mlmodel.get_spec().description.output:
        kind = out.type.WhichOneof("Type")
        mlmodel.output_description[out.name] = ("class logits" if not classifier else "the most probable class label"
                                                if kind == "stringType" else "class probabilities (softmax of the logits)")
    meta = {"archc.normalization": norm.describe(), "archc.precision": "fp32" if fp32 else "fp16"}
    meta.update({k: str(v) for k, v in (metadata or {}).items() if k not in ("author", "version", "license")})
    for key in ("author", "version", "license"):
        if (metadata or {}).get(key):
            setattr(mlmodel, key, str(metadata[key]))
    mlmodel.user_defined_metadata.update(meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mlmodel.save(str(path))
    return path


@dataclass
class CoreMLReport:
    """What a saved package holds, read back from disk (no prediction needed)."""

    path: Path
    spec_version: int
    input_name: str
    input_kind: str
    precision: str
    op_histogram: Dict[str, int]
    residual_adds: int
    metadata: Dict[str, str] = field(default_factory=dict)

    @property
    def batch_norms(self) -> int:
        return self.op_histogram.get("batch_norm", 0)


def inspect_coreml(path: Union[str, Path]) -> CoreMLReport:
    """Load the package's spec and MIL program (works on Linux) and summarise it.

    Residual adds are ``add``/``sub`` ops whose two operands are both computed tensors (not constants):
    the skip connections and branch merges, counted the way ``GraphProfile.residual_adds`` counts them.
    """
    from .ct_import import import_coremltools
    import_coremltools(ExportError, "reading a Core ML package")
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as load_mil

    path = Path(path)
    if not path.exists():
        raise ExportError(f"{path}: no such Core ML package")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
            spec = mlmodel.get_spec()
            if spec.WhichOneof("Type") != "mlProgram":
                raise ExportError(f"{path}: not an ML program (model type {spec.WhichOneof('Type')})")
            prog = load_mil(spec, spec.specificationVersion, mlmodel.weights_dir)
    except ExportError:
        raise
    except Exception as exc:
        raise ExportError(f"{path}: Core ML package does not load: {type(exc).__name__}: {exc}") from exc
    hist: Counter = Counter()
    residual = 0
    dtypes: Counter = Counter()
    for fn in prog.functions.values():
        for op in fn.operations:
            hist[op.op_type] += 1
            if op.op_type in ("add", "sub") and op.x.val is None and op.y.val is None:
                residual += 1
            if op.op_type == "conv":
                dtypes[str(op.outputs[0].dtype.__name__)] += 1
    inp = spec.description.input[0]
    precision = "fp16" if any("16" in k for k in dtypes) else "fp32"
    return CoreMLReport(path=path, spec_version=spec.specificationVersion, input_name=inp.name,
                        input_kind=inp.type.WhichOneof("Type"), precision=precision,
                        op_histogram=dict(sorted(hist.items())), residual_adds=residual,
                        metadata=dict(spec.description.metadata.userDefined))


@dataclass(frozen=True)
class CoreMLExpectation:
    """What the package may contain, derived from the torch graph it was converted from.

    A deploy graph has no BatchNorm, so its package must have no ``batch_norm`` op; the one exception is
    the affine of a GroupNorm/LayerNorm, which coremltools lowers to reduce/sub/div plus a per-channel
    scale and shift that its optimiser fuses into a ``batch_norm`` op (and whose ``x - mean`` is a sub of
    two computed tensors). Residual adds may not exceed the graph's own (plus those norm subs).
    """

    batch_norms: int = 0
    residual_adds: Optional[int] = None
    norms: int = 0

    @classmethod
    def from_graph(cls, model: nn.Module, example: torch.Tensor) -> "CoreMLExpectation":
        from ..analysis.profile import profile_graph
        prof = profile_graph(model, example)
        kinds = Counter(n.kind for n in prof.nodes)
        norms = kinds.get("groupnorm", 0) + kinds.get("layernorm", 0)
        return cls(batch_norms=kinds.get("batchnorm", 0) + norms, residual_adds=prof.residual_adds() + norms,
                   norms=norms)


def check_coreml(report: CoreMLReport, expect: Optional[CoreMLExpectation] = None) -> None:
    """Fail unless the package is what archc ships: ML program for iOS 16+, image input, no batch_norm op
    beyond what the source graph explains, and no residual add that the pass removed come back."""
    expect = expect or CoreMLExpectation()
    problems = []
    if report.spec_version < MIN_SPEC_VERSION:
        problems.append(f"specification version {report.spec_version} < {MIN_SPEC_VERSION} (iOS 16)")
    if report.input_kind != "imageType":
        problems.append(f"input '{report.input_name}' is a {report.input_kind}, not an image")
    if report.batch_norms > expect.batch_norms:
        why = f" (the graph explains {expect.batch_norms}: GroupNorm/LayerNorm affines)" if expect.batch_norms else ""
        problems.append(f"{report.batch_norms} batch_norm ops remain{why}")
    if expect.residual_adds is not None and report.residual_adds > expect.residual_adds:
        problems.append(f"{report.residual_adds} residual adds, but the graph has {expect.residual_adds}")
    if problems:
        raise ExportError(f"{report.path}: " + "; ".join(problems))


def predict_coreml(path: Union[str, Path], image: np.ndarray) -> np.ndarray:
    """Run the package on one HxWx3 uint8 RGB image (macOS only) and return its logits."""
    if platform.system() != "Darwin":
        raise DeviceError(f"Core ML prediction needs macOS (coremltools predicts only there); this is {platform.system()}")
    import coremltools as ct
    from PIL import Image

    mlmodel = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit.CPU_ONLY)
    out = mlmodel.predict({"image": Image.fromarray(image)})
    return np.asarray(out["logits"], dtype=np.float32)


def torch_reference_from_image(model: nn.Module, image: np.ndarray, normalization: Optional[ImageNormalization]) -> torch.Tensor:
    """What the torch model gives for the same uint8 image under the package's preprocessing."""
    x = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1).unsqueeze(0) / 255.0
    x = (normalization or NO_NORMALIZATION).apply(x)
    with torch.no_grad():
        return model.eval()(x)
