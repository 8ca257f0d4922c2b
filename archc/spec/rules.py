"""Cross-field rules: combinations that parse but cannot be built, caught at load time."""
from __future__ import annotations

from typing import Tuple

from .model import Spec
from .yamlsrc import Located

#: a spec estimated beyond this many parameters is rejected as absurd before anything is allocated
MAX_PARAMS = 2_000_000_000


def conv_padding(kernel: int, stride: int) -> int:
    """Symmetric padding of every strided conv in archc (timm's rule): centres all odd kernels alike,
    so a 1x1 or small branch padded to the large kernel lines up exactly."""
    return (stride - 1 + kernel - 1) // 2


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def stem_out(spec: Spec, size: int) -> int:
    st = spec.stem
    if st.type in ("mobileone", "conv_relu"):
        for _ in range(2):
            size = conv_out(size, st.kernel, 2, conv_padding(st.kernel, 2))
        return size
    pad = st.padding if st.padding is not None else conv_padding(st.kernel, st.stride)
    return conv_out(size, st.kernel, st.stride, pad)


def stage_resolutions(spec: Spec) -> Tuple[Tuple[int, int], ...]:
    """Feature-map size (H, W) of every stage's blocks for the spec's input size."""
    out = []
    h, w = (stem_out(spec, s) for s in spec.input_size)
    for stage in spec.stages:
        ds = stage.downsample
        if ds is not None:
            pad = conv_padding(ds.kernel, ds.stride)
            h = conv_out(h, ds.kernel, ds.stride, pad)
            w = conv_out(w, ds.kernel, ds.stride, pad)
        out.append((h, w))
    return tuple(out)


def estimate_params(spec: Spec) -> int:
    """A cheap upper-bound-ish parameter estimate, to refuse absurd specs before building them."""
    total = 0
    prev = spec.stem_width
    for s in spec.stages:
        hidden = int(s.width * s.mlp_ratio)
        per_block = 2 * s.width * hidden + s.width * (s.ffn_kernel ** 2 + 16)
        if s.mixer == "attention":
            per_block += 4 * s.width * s.width
        total += s.depth * per_block + prev * s.width * 2 + s.meta3d * 2560 * s.width  # Meta3D qkv + proj
        prev = s.width
    return total + int(prev * spec.head.expansion) * spec.num_classes


def check_spec(spec: Spec, loc: Located) -> None:
    """Raise SpecError (with the key path) for combinations that cannot be built."""
    st = spec.stem
    if st.type in ("mobileone", "conv_relu"):
        if st.stride != 4:
            raise loc.error(("stem", "stride"), f"value {st.stride} not allowed: the {st.type} stem always "
                                                "reduces by 4 (two stride-2 blocks); use type: conv for another stride")
        if st.padding is not None:
            raise loc.error(("stem", "padding"), f"only a conv stem takes padding ({st.type} pads kernel // 2)")
    prev = spec.stem_width
    for i, s in enumerate(spec.stages):
        p = ("stages", i)
        ds = s.downsample
        if ds is None:
            if s.width != prev:
                where = "the stem" if i == 0 else f"stages[{i - 1}]"
                raise loc.error(p + ("width",), f"width {s.width} differs from {where}'s width {prev} but the stage "
                                                "has no downsample to change it; add a downsample or match widths")
        elif ds.type == "replk":
            if s.width % prev:
                raise loc.error(p + ("width",), f"width {s.width} must be a multiple of the incoming width {prev}: "
                                                f"the replk patch embedding is a grouped conv with groups={prev}; "
                                                "use downsample.type: conv for arbitrary widths")
            if ds.small_kernel is not None and ds.small_kernel > ds.kernel:
                raise loc.error(p + ("downsample", "small_kernel"),
                                f"small kernel {ds.small_kernel} exceeds kernel {ds.kernel}; it must fit inside it to fold")
        if s.mixer == "attention" and s.width % s.head_dim:
            raise loc.error(p + ("width",), f"width {s.width} is not divisible by head_dim {s.head_dim} "
                                            f"(attention needs whole heads); valid widths are multiples of {s.head_dim}")
        if s.meta3d and s.mixer != "meta4d":
            raise loc.error(p + ("meta3d",), f"meta3d {s.meta3d} needs mixer: meta4d (got '{s.mixer}'); "
                                             "only EfficientFormer stages have Meta3D blocks")
        if s.meta3d and i != len(spec.stages) - 1:
            raise loc.error(p + ("meta3d",), f"meta3d {s.meta3d} on stage {i}: only the last stage may turn "
                                             f"into tokens (stage {len(spec.stages) - 1})")
        if s.meta3d > s.depth:
            raise loc.error(p + ("meta3d",), f"meta3d {s.meta3d} exceeds depth {s.depth}; valid: 0 to {s.depth}")
        if s.meta3d and spec.head.type != "distilled":
            raise loc.error(("head", "type"), f"'{spec.head.type}' reads a feature map but stage {i} ends in "
                                              "tokens (meta3d > 0); valid: distilled")
        if int(s.width * s.mlp_ratio) < 1:
            raise loc.error(p + ("mlp_ratio",), f"mlp_ratio {s.mlp_ratio} gives an FFN with 0 hidden channels")
        prev = s.width
    hd = spec.head
    if hd.type == "mobileone_se":
        out = spec.stages[-1].width * hd.expansion
        if out != int(out) or int(out) % spec.stages[-1].width:
            raise loc.error(("head", "expansion"), f"expansion {hd.expansion} must be a whole number: the head is "
                                                   "a depthwise conv whose output width is a multiple of its input")
        if max(1, round(int(out) * hd.se_ratio)) < 1:  # pragma: no cover - guarded by min se_ratio
            raise loc.error(("head", "se_ratio"), "squeeze-excite would have no channels")
    for i, (h, w) in enumerate(stage_resolutions(spec)):
        if h < 1 or w < 1:
            raise loc.error(("input_size",), f"input {spec.input_size[0]}x{spec.input_size[1]} is too small: "
                                             f"stage {i} would have {max(h, 0)}x{max(w, 0)} tokens")
    est = estimate_params(spec)
    if est > MAX_PARAMS:
        raise loc.error(("stages",), f"absurd size: about {est / 1e9:.1f}B parameters (limit "
                                     f"{MAX_PARAMS / 1e9:.0f}B); reduce widths or depths")
