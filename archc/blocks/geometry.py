"""Feature-map geometry of a whole spec, from each part's kind (``Kind.out_size``): the stem's output, every
stage's size, and whether a built graph is tied to its input size. Needs only the block families, so kinds
(EfficientFormer's attention biases) and the spec rules both use it."""
from __future__ import annotations

from typing import Any, Tuple

from .downsamples import DOWNSAMPLES
from .stage import MIXERS
from .stems import STEMS


def stem_out(spec: Any, size: int) -> int:
    """Output size of the spec's stem along one axis of ``size``."""
    return STEMS[spec.stem.type].out_size(spec.stem, size)


def sized_to_input(spec: Any) -> bool:
    """True when the built graph holds modules sized to ``spec.input_size`` (``Kind.sized_to_input``), so it runs
    at that resolution only: timing or profiling another size needs a graph built for it."""
    return any(MIXERS[s.mixer.type].sized_to_input(s.mixer) for s in spec.stages)


def stage_resolutions(spec: Any) -> Tuple[Tuple[int, int], ...]:
    """Feature-map size (H, W) at the end of every stage for the spec's input size."""
    out = []
    h, w = (stem_out(spec, s) for s in spec.input_size)
    for stage in spec.stages:
        for part, family in ((stage.downsample, DOWNSAMPLES), (stage.mixer, MIXERS)):
            if part is not None:
                size = family[part.type].out_size
                h, w = size(part, h), size(part, w)
        out.append((h, w))
    return tuple(out)
