"""Post-training int8 remedies from the literature, applied to the fp32 deploy graph (a ``torch.fx.GraphModule``
from ``archc.deploy_model`` / ``archc.reparameterize``) before it is exported to ONNX and quantized by ONNX Runtime
(``quantize_onnx_int8``):

- ``equalize``: cross-layer equalization (Nagel et al., "Data-Free Quantization Through Weight Equalization and
  Bias Correction", ICCV 2019, section 4.1). Exact: the equalized graph computes the same function.
- ``correct_bias``: empirical bias correction of weight quantization (DFQ section 4.2; Banner et al., "Post
  training 4-bit quantization of convolutional networks for rapid-deployment", NeurIPS 2019). Not exact by
  design: it shifts each output's bias by the mean error the weight rounding will add.

Both return a report whose ``graph`` is a new GraphModule; the graph passed in is never modified.
benchmarks/quant_fidelity.py measures both on trained models (docs/QUANTIZATION.md).
"""
from __future__ import annotations

import copy
import math
import operator
from collections import Counter
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple, Union

import numpy as np
import torch
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

from ..passes.graph import module, value_users

#: module types f with f(s * x) = s * f(x) for every s > 0 (positively homogeneous), applied element-wise: a
#: per-channel scale passes through them. GELU, SiLU, Hardswish, Sigmoid are not; neither is ReLU6 (its clip
#: at 6 does not scale), so none of them is listed and no pair is equalized across one.
HOMOGENEOUS_MODULES = (nn.ReLU, nn.LeakyReLU, nn.Identity)
HOMOGENEOUS_FUNCTIONS = (torch.relu, F.relu, F.leaky_relu)
HOMOGENEOUS_METHODS = ("relu",)

#: symmetric int8 weights as ONNX Runtime quantizes them (quant_utils.compute_scale_zp with symmetric=True and
#: get_qmin_qmax_for_qType(INT8, symmetric=True) = (-127, 127)): scale = (absmax - (-absmax)) / (127 - (-127))
#: computed in float64 and stored in float32, q = round_half_even(w / scale) computed in float32, clipped to
#: [-128, 127] (quantize_nparray); an all-zero range gets scale 1.
INT8_SYMMETRIC_MAX = 127


# ----------------------------------------------------------------------------------------- graph queries
def _calls(gm: fx.GraphModule) -> Counter:
    return Counter(str(n.target) for n in gm.graph.nodes if n.op == "call_module")


def _is_homogeneous(gm: fx.GraphModule, node: fx.Node) -> bool:
    if node.op == "call_module":
        return isinstance(module(gm, node), HOMOGENEOUS_MODULES)
    if node.op == "call_function":
        return node.target in HOMOGENEOUS_FUNCTIONS
    return node.op == "call_method" and node.target in HOMOGENEOUS_METHODS


def _spatial_mean(node: fx.Node) -> Optional[bool]:
    """``keepdim`` of a mean over exactly the spatial axes (2, 3) of an N x C x H x W tensor (per channel,
    linear: a channel scale passes through it), or None for any other node."""
    if not ((node.op == "call_method" and node.target == "mean")
            or (node.op == "call_function" and node.target is torch.mean)):
        return None
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    if dims is None:
        return None
    dims = dims if isinstance(dims, (list, tuple)) else [dims]
    if not all(isinstance(d, int) for d in dims) or {d % 4 for d in dims} != {2, 3} or len(dims) != 2:
        return None
    return bool(keep)


def _constant(gm: fx.GraphModule, node) -> Optional[torch.Tensor]:
    """The tensor behind a ``get_attr`` node, or behind a ``reshape``/``view`` of one with constant sizes."""
    if not isinstance(node, fx.Node):
        return None
    if node.op == "get_attr":
        obj = gm
        for part in str(node.target).split("."):
            obj = getattr(obj, part)
        return obj if isinstance(obj, torch.Tensor) else None
    if (node.op == "call_method" and node.target in ("reshape", "view") and node.args and not node.kwargs
            and not any(isinstance(a, fx.Node) for a in node.args[1:])):
        base = _constant(gm, node.args[0])
        return None if base is None else base.reshape(*node.args[1:])
    return None


# ------------------------------------------------------------------------------------- weight ranges
def _out_ranges(w: torch.Tensor) -> torch.Tensor:
    """max |W| of each output channel (rows of a conv or linear weight)."""
    return w.abs().reshape(w.shape[0], -1).amax(1)


def _in_ranges(mod: nn.Module, w: torch.Tensor) -> torch.Tensor:
    """max |W| over everything that reads each *input* channel: a linear weight's columns; for a conv with
    ``groups`` g, input channel i = g_i * (C_in / g) + j is read by the C_out / g filters of its group, at slot j."""
    if isinstance(mod, nn.Linear):
        return w.abs().amax(0)
    g = mod.groups
    cout, cin_g = w.shape[0], w.shape[1]
    return w.abs().reshape(g, cout // g, cin_g, -1).amax(dim=3).amax(dim=1).reshape(-1)


def _scale_inputs(mod: nn.Module, w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """W with every weight that reads input channel i multiplied by s_i."""
    if isinstance(mod, nn.Linear):
        return w * s.reshape(1, -1)
    g = mod.groups
    cout, cin_g = w.shape[0], w.shape[1]
    return (w.reshape(g, cout // g, cin_g, -1) * s.reshape(g, 1, cin_g, 1)).reshape(w.shape)


# -------------------------------------------------------------------------------- cross-layer equalization
@dataclass(frozen=True)
class EqualizedPair:
    conv1: str                 # module path of the first conv (its output channels are divided by s)
    via: Tuple[str, ...]       # what lies between: positively homogeneous activations, a spatial mean
    conv2: str                 # the conv / linear reading conv1's output (its input channels multiplied by s)
    imbalance_before: float    # max over channels of |log2(r1_i / r2_i)| (0: ranges equal)
    imbalance_after: float
    scale_min: float           # the product of the scales applied over all iterations, smallest and largest
    scale_max: float


@dataclass
class EqualizeReport:
    graph: fx.GraphModule                  # the equalized deploy graph (new; the input is not modified)
    pairs: List[EqualizedPair]
    iterations: int                        # sweeps over all pairs
    converged: bool                        # in the last sweep every pair's ranges were already within ``tolerance``
    #: per weight touched: ratio of its largest to its smallest nonzero output-channel range, before -> after
    #: (what one per-tensor int8 scale has to cover)
    spread: Dict[str, Tuple[float, float]] = field(default_factory=dict)

    @property
    def changed(self) -> int:
        """How many pairs were rescaled (some s_i != 1)."""
        return sum(1 for p in self.pairs if p.scale_min != 1.0 or p.scale_max != 1.0)

    def to_dict(self) -> Dict:
        return {"pairs": len(self.pairs), "changed": self.changed, "iterations": self.iterations,
                "converged": self.converged,
                "pair_list": [f"{p.conv1} -> {' -> '.join(p.via + (p.conv2,))}" for p in self.pairs],
                "max_imbalance_before": max((p.imbalance_before for p in self.pairs), default=0.0),
                "max_imbalance_after": max((p.imbalance_after for p in self.pairs), default=0.0)}


def equalization_pairs(gm: fx.GraphModule) -> List[Tuple[fx.Node, Tuple[fx.Node, ...], fx.Node]]:
    """Every (conv1, between, conv2) where equalization is exact: conv1 is a Conv2d whose output feeds only
    conv2, through nothing or positively homogeneous element-wise ops (ReLU, LeakyReLU, Identity) and at most
    one mean over the spatial axes; conv2 is a Conv2d of any ``groups`` (dense, depthwise) or, after a mean
    without keepdim, a Linear. Each module is called once (a shared module would be rescaled for two uses)."""
    calls = _calls(gm)
    pairs = []
    for n in gm.graph.nodes:
        m1 = module(gm, n)
        if not isinstance(m1, nn.Conv2d) or calls[str(n.target)] != 1:
            continue
        node, via, mean_keep = n, [], None
        while True:
            users = value_users(node)
            if len(users) != 1 or not users[0].args or users[0].args[0] is not node:
                break
            u = users[0]
            if any(isinstance(a, fx.Node) for a in list(u.args[1:]) + list(u.kwargs.values())):
                break  # a second tensor operand: not an element-wise map of this tensor alone
            if _is_homogeneous(gm, u):
                via.append(u)
                node = u
                continue
            keep = _spatial_mean(u)
            if keep is not None and mean_keep is None:
                via.append(u)
                mean_keep = keep
                node = u
                continue
            m2 = module(gm, u)
            if calls[str(u.target)] != 1 or len(u.args) != 1:
                break
            if isinstance(m2, nn.Conv2d) and mean_keep in (None, True) and m2.in_channels == m1.out_channels:
                pairs.append((n, tuple(via), u))
            elif isinstance(m2, nn.Linear) and mean_keep is False and m2.in_features == m1.out_channels:
                pairs.append((n, tuple(via), u))
            break
    return pairs


def _log2_imbalance(r1: torch.Tensor, r2: torch.Tensor) -> float:
    ok = (r1 > 0) & (r2 > 0)
    return float((r1[ok] / r2[ok]).log2().abs().max()) if ok.any() else 0.0


def _spread(w: torch.Tensor) -> float:
    r = _out_ranges(w)
    r = r[r > 0]
    return float(r.max() / r.min()) if len(r) else 1.0


@torch.no_grad()
def equalize(gm: fx.GraphModule, iterations: int = 1000, tolerance: float = 0.01) -> EqualizeReport:
    """Cross-layer equalization (DFQ, section 4.1) of a deploy graph: for each pair conv1 -> [ReLU / LeakyReLU /
    identity] -> conv2 in which conv1's output feeds only conv2 (``equalization_pairs``), output channel i of conv1
    and input channel i of conv2 are rescaled so their weight ranges match:

        s_i = sqrt(r1_i / r2_i),  W1_i /= s_i,  b1_i /= s_i,  W2[:, i] *= s_i

    with r1_i = max |W1| over conv1's output channel i and r2_i = max |W2| over everything reading input channel i
    (conv2 dense, grouped or depthwise, or a Linear after a spatial mean). Both ranges become sqrt(r1_i r2_i), so
    one per-tensor int8 scale no longer has to cover channels that differ by orders of magnitude. Exact because
    f(x / s) = f(x) / s for s > 0 when f is positively homogeneous (ReLU, LeakyReLU, identity, a mean), and zero
    padding stays zero. **GELU is not positively homogeneous** (nor SiLU, Hardswish, sigmoid, ReLU6, whose clip at 6
    does not scale): no pair is equalized across one. In FastViT deploy graphs the pairs are ConvFFN's depthwise
    conv -> 1x1 fc1 and the downsample's grouped kxk -> 1x1 (no activation between), and the SE's fc1 -> ReLU -> fc2;
    in MobileOne every depthwise kxk -> ReLU -> pointwise 1x1 and pointwise -> ReLU -> depthwise, and the last conv ->
    ReLU -> mean -> classifier. A conv in two pairs (MobileOne's chain) is pulled by both, so the pairs are swept
    again until, in a whole sweep, every pair's r1_i and r2_i were already within ``tolerance`` (relative) of each
    other, or after ``iterations`` sweeps (DFQ iterates to convergence). Scales accumulate in float64 and each
    weight is rounded to its dtype once, at the end, so the equalized graph differs from the input by float32
    rounding only. Channels with a zero range keep s = 1.
    """
    out = copy.deepcopy(gm)
    found = equalization_pairs(out)
    mods = {str(n.target): module(out, n) for p in found for n in (p[0], p[2])}
    w = {k: m.weight.detach().double().clone() for k, m in mods.items()}
    b = {k: (m.bias.detach().double().clone() if m.bias is not None else None) for k, m in mods.items()}
    spread_before = {k: _spread(v) for k, v in w.items()}
    names = [(str(c1.target), tuple(str(v.target) if v.op == "call_module" else v.name for v in via), str(c2.target))
             for c1, via, c2 in found]
    before = [_log2_imbalance(_out_ranges(w[a]), _in_ranges(mods[c], w[c])) for a, _, c in names]
    total = [torch.ones(mods[a].out_channels, dtype=torch.float64) for a, _, _ in names]
    sweeps, converged = 0, not names
    while not converged and sweeps < iterations:
        sweeps += 1
        worst = 0.0
        for k, (a, _, c) in enumerate(names):
            r1, r2 = _out_ranges(w[a]), _in_ranges(mods[c], w[c])
            s = torch.where((r1 > 0) & (r2 > 0), (r1 / r2.clamp_min(1e-300)).sqrt(), torch.ones_like(r1))
            w[a] = w[a] / s.reshape(-1, *([1] * (w[a].dim() - 1)))
            if b[a] is not None:
                b[a] = b[a] / s
            w[c] = _scale_inputs(mods[c], w[c], s)
            total[k] = total[k] * s
            worst = max(worst, 2 * float(s.log().abs().max()))   # max |ln(r1_i / r2_i)| before this update
        converged = worst <= math.log1p(tolerance)
    for k, m in mods.items():
        m.weight.data.copy_(w[k].to(m.weight.dtype))
        if b[k] is not None:
            m.bias.data.copy_(b[k].to(m.bias.dtype))
    after = [_log2_imbalance(_out_ranges(mods[a].weight.double()), _in_ranges(mods[c], mods[c].weight.double()))
             for a, _, c in names]
    pairs = [EqualizedPair(a, via, c, before[k], after[k], float(total[k].min()), float(total[k].max()))
             for k, (a, via, c) in enumerate(names)]
    spread = {k: (spread_before[k], _spread(m.weight.detach().double())) for k, m in mods.items()}
    return EqualizeReport(out, pairs, sweeps, converged, spread)


# ------------------------------------------------------------------------------------------ bias correction
def fake_quantize_weight(w: torch.Tensor, per_channel: bool = True) -> torch.Tensor:
    """``w`` rounded to symmetric int8 exactly as ONNX Runtime's static quantizer writes it (QInt8 weights are
    symmetric by default, ``BaseQuantizer.is_weight_symmetric``): per output channel (axis 0 of a Conv weight, and
    of a Gemm weight with transB, i.e. a torch Linear's) or per tensor; scale = max|w| / 127 taken in float64 and
    stored in float32 (``compute_scale_zp``), q = round-half-even(w / scale) in float32, clipped to [-128, 127]
    (``quantize_nparray``); a range of zero gets scale 1 (q = 0 for such a weight). Returns scale * q in w's dtype.

    Not replicated: ONNX Runtime's ``_adjust_weight_scale_for_int32_bias``, which widens a weight's scale when
    input_scale * weight_scale is too small for the int32 bias (below |b| / 2**31); ``ort_weight_check`` reads the
    quantized file back and says whether any weight differs."""
    q, scale = int8_codes(w, per_channel)
    return (q * scale.reshape(-1, *([1] * (w.dim() - 1)))).to(w.dtype)


def int8_codes(w: torch.Tensor, per_channel: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """(int8 codes as float32 in ``w``'s shape, float32 scale per output channel or a single one): the integers and
    scales ONNX Runtime stores for ``w`` (``fake_quantize_weight``)."""
    w32 = w.detach().float()
    flat = w32.reshape(w32.shape[0], -1) if per_channel else w32.reshape(1, -1)
    absmax = flat.abs().amax(1, keepdim=True).double()
    scale = (2.0 * absmax / (2 * INT8_SYMMETRIC_MAX)).float()   # (rmax - rmin) / (qmax - qmin), float64 -> float32
    scale = torch.where(scale < torch.finfo(torch.float32).tiny, torch.ones_like(scale), scale)
    q = torch.clamp(torch.round(flat / scale), -128, 127)
    return q.reshape(w.shape), scale.reshape(-1)


def _post_scale(gm: fx.GraphModule, node: fx.Node) -> Optional[torch.Tensor]:
    """The per-output-channel constant a Conv's output is multiplied by right after it (FastViT's layer scale
    after ConvFFN's fc2), which ONNX Runtime's pre-processing folds into the conv's weight before quantizing
    (its ConvMulFusion: ``ConvMulFusion_W_<name>`` in the pre-processed file), or None. A vector of C_out."""
    mod = module(gm, node)
    users = value_users(node)
    if not isinstance(mod, nn.Conv2d) or len(users) != 1:
        return None
    u = users[0]
    if not (u.op == "call_function" and u.target in (operator.mul, torch.mul) and len(u.args) == 2 and not u.kwargs):
        return None
    other = u.args[1] if u.args[0] is node else u.args[0] if u.args[1] is node else None
    const = _constant(gm, other)
    if const is None:
        return None
    c = mod.out_channels
    if const.numel() == 1:
        return const.detach().reshape(1).expand(c).clone()
    shape = tuple(const.shape)
    if shape in ((c, 1, 1), (1, c, 1, 1)):
        return const.detach().reshape(c).clone()
    return None


@dataclass(frozen=True)
class CorrectedLayer:
    module: str
    kind: str                  # Conv2d / Linear
    shift_max: float           # max |bias change| over its output channels
    output_scale: float        # max |output| of the layer over the calibration images, for scale
    folded_scale: bool         # its weight was quantized with the following per-channel Mul folded in, as ORT does


@dataclass
class BiasCorrectionReport:
    graph: fx.GraphModule      # the corrected deploy graph (new; the input is not modified)
    per_channel: bool
    images: int
    layers: List[CorrectedLayer]
    skipped: List[str]         # modules left alone (``skip``, or called more than once)

    @property
    def changed(self) -> int:
        return sum(1 for r in self.layers if r.shift_max > 0)

    def to_dict(self) -> Dict:
        return {"per_channel": self.per_channel, "images": self.images, "layers": len(self.layers),
                "changed": self.changed, "skipped": list(self.skipped),
                "folded_scale": [r.module for r in self.layers if r.folded_scale],
                "largest_shifts": [(r.module, r.shift_max, r.output_scale) for r in
                                   sorted(self.layers, key=lambda r: -r.shift_max / (r.output_scale or 1.0))[:5]]}


@torch.no_grad()
def correct_bias(gm: fx.GraphModule, calibration_images: Union[np.ndarray, torch.Tensor], per_channel: bool = True,
                 *, skip: Iterable[str] = (), batch: int = 64) -> BiasCorrectionReport:
    """Empirical bias correction for int8 weight rounding (DFQ section 4.2, Banner et al.): for each Conv2d and
    Linear, b <- b - E[(Q(W) - W) x], with Q the symmetric int8 weight quantizer ONNX Runtime will apply
    (``fake_quantize_weight``, per output channel or per tensor: pass the export's ``per_channel``) and the
    expectation over the calibration images and, for a conv, over its output positions. For a 1x1 conv and a
    Linear that is (Q(W) - W) . E[x] with E[x] the per-input-channel (spatial) mean of the layer's input; for a
    kxk conv it is the same with each kernel tap's mean input, so zero padding and stride are accounted for
    (computed as the mean of conv(x, Q(W) - W)). Inputs are those of the fp32 graph (one pass, forward hooks).

    What it corrects: the *mean* shift of each output channel that rounding the weights adds (the rounding errors
    of one filter do not average out against a non-zero-mean input, e.g. after a ReLU/GELU or a folded
    BatchNorm's shift), which then biases every later layer. What it does not: the variance that weight rounding
    adds around that mean (the per-image error stays), and anything from quantizing *activations* (their clipping
    and rounding, the int32 bias's rounding): the activation ranges are calibrated by ONNX Runtime afterwards.

    A conv followed by a per-channel constant Mul (FastViT's layer scale) is quantized by ONNX Runtime with the
    Mul folded into its weight (pre-processing's ConvMulFusion); its Q(W) is taken on that folded weight and the
    correction divided back by the scale. ``skip``: module paths to leave alone (layers kept in float: their
    weights are not rounded, so correcting them would add an error). Returns a new graph; ``gm`` is not modified.
    """
    out = copy.deepcopy(gm).eval()
    skip = set(skip)
    calls = _calls(out)
    layers, skipped = [], []
    for n in out.graph.nodes:
        mod = module(out, n)
        if not isinstance(mod, (nn.Conv2d, nn.Linear)):
            continue
        name = str(n.target)
        if name in skip or calls[name] != 1:
            skipped.append(name)
            continue
        layers.append((name, mod, _post_scale(out, n)))
    x = torch.as_tensor(np.ascontiguousarray(calibration_images) if isinstance(calibration_images, np.ndarray)
                        else calibration_images)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"calibration images must be a non-empty N x C x H x W array, got shape {tuple(x.shape)}")
    sums = {name: torch.zeros(mod.weight.shape[0], dtype=torch.float64) for name, mod, _ in layers}
    counts = {name: 0 for name, _, _ in layers}
    peaks = {name: 0.0 for name, _, _ in layers}
    deltas = {}
    for name, mod, gamma in layers:
        w = mod.weight.detach().float()
        if gamma is not None:  # the weight ONNX Runtime quantizes: W * gamma per output channel, in float32
            w = w * gamma.float().reshape(-1, *([1] * (w.dim() - 1)))
        deltas[name] = (fake_quantize_weight(w, per_channel) - w).double()

    def hook(name, mod):
        def fn(m, args, output):
            inp = args[0].detach().double()
            if isinstance(m, nn.Conv2d):
                err = F.conv2d(inp, deltas[name], None, m.stride, m.padding, m.dilation, m.groups)
                sums[name] += err.sum(dim=(0, 2, 3))
                counts[name] += err.shape[0] * err.shape[2] * err.shape[3]
            else:
                err = inp.reshape(-1, inp.shape[-1]) @ deltas[name].t()
                sums[name] += err.sum(0)
                counts[name] += err.shape[0]
            peaks[name] = max(peaks[name], float(output.detach().abs().max()))
        return fn

    handles = [mod.register_forward_hook(hook(name, mod)) for name, mod, _ in layers]
    try:
        dtype = next(out.parameters()).dtype
        for i in range(0, len(x), batch):
            out(x[i:i + batch].to(dtype))
    finally:
        for h in handles:
            h.remove()
    report = []
    for name, mod, gamma in layers:
        shift = sums[name] / max(counts[name], 1)      # E[(Q(W') - W') x] in the (folded) layer's output units
        if gamma is not None:
            g = gamma.double()
            shift = torch.where(g != 0, shift / torch.where(g != 0, g, torch.ones_like(g)), torch.zeros_like(g))
        if mod.bias is None:
            mod.bias = nn.Parameter(torch.zeros(mod.weight.shape[0], dtype=mod.weight.dtype))
        mod.bias.data.copy_((mod.bias.detach().double() - shift).to(mod.bias.dtype))
        report.append(CorrectedLayer(name, type(mod).__name__, float(shift.abs().max()), peaks[name],
                                     gamma is not None))
    return BiasCorrectionReport(out, per_channel, len(x), report, skipped)


# ------------------------------------------------------------------------------ check against ONNX Runtime
def ort_weight_check(gm: fx.GraphModule, int8_onnx, per_channel: bool) -> Dict:
    """Read the int8 conv/linear weights ONNX Runtime wrote into ``int8_onnx`` (QDQ: each ``<param>.weight_quantized``
    int8 initializer and its scale) and compare codes and scales with ``int8_codes`` of ``gm``'s weight of that
    parameter name (with the following per-channel Mul folded in where ORT's ``ConvMulFusion_W_`` prefix says it
    did). A Linear the exporter wrote as a MatMul keeps no name (``onnx::MatMul_*``, its weight transposed): it is
    matched to the renamed int8 tensor of the transposed shape whose codes are closest to its own. ``exact``: weights
    whose int8 codes and float32 scales all equal ours; ``codes_off``: the largest code difference; ``other``: int8
    constants that are no conv/linear weight (a Mul's constant operand, e.g. FastViT's pooling-mixer scales, which
    ONNX Runtime quantizes too); ``missing``: conv/linear modules with no int8 weight found (kept in float)."""
    import onnx
    from onnx import numpy_helper
    graph = onnx.load(str(int8_onnx)).graph
    inits = {i.name: i for i in graph.initializer}
    post = {str(n.target): _post_scale(gm, n) for n in gm.graph.nodes if n.op == "call_module"}
    mods = {str(n.target): module(gm, n) for n in gm.graph.nodes
            if isinstance(module(gm, n), (nn.Conv2d, nn.Linear))}
    named, renamed = {}, []
    for node in graph.node:
        if node.op_type != "DequantizeLinear" or not node.input[0].endswith("_quantized"):
            continue
        q = inits.get(node.input[0])
        if q is None or q.data_type != onnx.TensorProto.INT8:
            continue
        name = node.input[0][:-len("_quantized")]
        fused = name.startswith("ConvMulFusion_W_")
        param = name[len("ConvMulFusion_W_"):] if fused else name
        codes = numpy_helper.to_array(q).astype(np.float64)
        scale = numpy_helper.to_array(inits[node.input[1]]).astype(np.float32).reshape(-1)
        path = param[:-len(".weight")] if param.endswith(".weight") else None
        if path in mods:
            named[path] = (codes, scale, fused)
        else:
            renamed.append((codes, scale))

    def ours(path: str, fused: bool) -> Tuple[np.ndarray, np.ndarray]:
        w = mods[path].weight.detach().float()
        if fused and post.get(path) is not None:
            w = w * post[path].float().reshape(-1, *([1] * (w.dim() - 1)))
        codes, scale = int8_codes(w, per_channel)
        return codes.double().numpy(), scale.numpy()

    results = {}
    for path, (theirs, their_scale, fused) in named.items():
        mine, scale = ours(path, fused)
        off = float(np.abs(mine - theirs).max()) if mine.shape == theirs.shape else float("inf")
        results[path] = (off, scale.shape == their_scale.shape and bool((scale == their_scale).all()))
    for path, mod in mods.items():
        if path in named or not isinstance(mod, nn.Linear):
            continue
        mine, scale = ours(path, False)
        best = None
        for k, (theirs, their_scale) in enumerate(renamed):
            if theirs.shape == mine.T.shape:
                off = float(np.abs(mine.T - theirs).max())
                if best is None or off < best[0]:
                    best = (off, scale.shape == their_scale.shape and bool((scale == their_scale).all()), k)
        if best is not None:
            results[path] = best[:2]
            renamed.pop(best[2])
    differing = [(p, off, same) for p, (off, same) in results.items() if off or not same]
    return {"compared": len(results), "exact": len(results) - len(differing),
            "codes_off": max((off for off, _ in results.values()), default=0.0), "differing": differing,
            "other": len(renamed), "missing": sorted(set(mods) - set(results))}
