"""Cross-field rules: combinations that parse but cannot be built, caught at load time.

Rules that belong to one kind (whole attention heads, replk width multiples, ...) live with the kind in
``archc.blocks`` as its ``check``; this module runs them and the rules that hold for every spec.
"""
from __future__ import annotations

from ..blocks import DOWNSAMPLES, HEADS, MIXERS, POS_ENCS, STEMS, CheckContext
from ..blocks.geometry import sized_to_input, stage_resolutions, stem_out  # noqa: F401  (public here too)
from ..blocks.stage import metaformer_estimate
from ..errors import SpecErrorList
from ..limits import limits
from .model import Spec
from .yamlsrc import Located


def estimate_params(spec: Spec) -> int:
    """A cheap upper-bound-ish parameter estimate, to refuse absurd specs before building them."""
    total, prev = 0, spec.stem_width
    for s in spec.stages:
        estimate = MIXERS[s.mixer.type].estimate or metaformer_estimate
        total += estimate(s, prev)
        prev = s.width
    return total + prev * int(getattr(spec.head, "expansion", 1)) * spec.num_classes


def check_spec(spec: Spec, loc: Located) -> None:
    """Raise SpecError (with the key path) for combinations that cannot be built."""
    def fail_at(prefix):
        return lambda path, message: loc.error(prefix + tuple(path), message)

    errors = SpecErrorList()  # each part's rules run, so a file's broken stages are all reported at once
    stem_check = STEMS[spec.stem.type].check
    if stem_check:
        with errors.collect():
            stem_check(CheckContext(spec, spec.stem, fail_at(("stem",)), in_chs=spec.in_chans))
    prev = spec.stem_width
    for i, s in enumerate(spec.stages):
        p = ("stages", i)
        kind = MIXERS[s.mixer.type]
        if s.downsample is None and s.width != prev and not kind.own_downsample:
            where = "the stem" if i == 0 else f"stages[{i - 1}]"
            errors.add(loc.error(p + ("width",), f"width {s.width} differs from {where}'s width {prev} but the "
                                                 "stage has no downsample to change it; add a downsample or match "
                                                 "widths"))
        if kind.norms is not None and spec.norm not in kind.norms:
            errors.add(loc.error(("norm",), f"norm '{spec.norm}' cannot be used with mixer '{kind.name}' "
                                            f"(stages[{i}]), which accepts: {', '.join(kind.norms)}"))
        for params, family in ((s.downsample, DOWNSAMPLES), (s.pos_enc, POS_ENCS), (s.mixer, MIXERS)):
            check = family[params.type].check if params is not None else None
            if check:
                with errors.collect():
                    check(CheckContext(spec, params, fail_at(p), s, i, prev))
        prev = s.width
    head_check = HEADS[spec.head.type].check
    if head_check:
        with errors.collect():
            head_check(CheckContext(spec, spec.head, fail_at(("head",)), in_chs=prev))
    errors.raise_any()  # the geometry and size below assume the parts are sound
    for i, (h, w) in enumerate(stage_resolutions(spec)):
        if h < 1 or w < 1:
            raise loc.error(("input_size",), f"input {spec.input_size[0]}x{spec.input_size[1]} is too small: "
                                             f"stage {i} would have {max(h, 0)}x{max(w, 0)} tokens")
    # a cheap early refusal (the estimate leaves parts out, so it errs low); archc.guards counts exactly
    est, limit = estimate_params(spec), limits().max_params
    if est > limit:
        size = f"{est / 1e9:.1f}B" if est >= 1e8 else f"{est:,}"
        raise loc.error(("stages",), f"absurd size: about {size} parameters, over the limit of {limit:,} "
                                     "(--max-params / ARCHC_MAX_PARAMS); reduce widths or depths")
