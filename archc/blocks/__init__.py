"""The plug-in families of the spec language: one record per kind (see ``kind.py`` and docs/ADD_A_BLOCK.md).

Importing this package registers every shipped kind; the spec schema, builder, checks, search space and
docs all read these registries.
"""
from . import heads, metaformer, mobileone, stems  # noqa: F401  (registration)
from . import efficientformer  # noqa: F401,E402  (after the FastViT kinds: registration order is the docs' order)
from .downsamples import DOWNSAMPLES, POS_ENCS
from .heads import HEADS
from .kind import BuildContext, CheckContext, Family, Kind
from .stage import MIXERS
from .stems import STEMS

#: spec key -> family, for the spec model, docs and JSON Schema
FAMILIES = {"mixer": MIXERS, "downsample": DOWNSAMPLES, "pos_enc": POS_ENCS, "stem": STEMS, "head": HEADS}

__all__ = ["MIXERS", "STEMS", "DOWNSAMPLES", "POS_ENCS", "HEADS", "FAMILIES", "Kind", "Family", "BuildContext",
           "CheckContext"]
