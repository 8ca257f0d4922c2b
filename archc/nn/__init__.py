"""Train-time building blocks (primitive torch layers, timm-compatible parameter names).

The names load lazily (PEP 562), so ``archc.nn.geometry`` (pure arithmetic, read by the spec rules) comes
without torch."""
from ..lazy import lazy_attributes

_HOMES = {
    "blocks": ("Attention", "ConvFFN", "ConvPatchEmbed", "MetaFormerBlock", "Mlp", "NormMixerBlock", "Pooling",
               "RepCPE", "RepLKPatchEmbed", "RepMixer", "RepMixerBlock"),
    "layers": ("ConvBN", "DropPath", "LayerScale2d", "Scale", "SqueezeExcite"),
    "mobileone": ("LargeKernelConv", "MobileOneBlock"),
    "stage": ("ClassifierHead", "Stage"),
}
__all__ = sorted(name for names in _HOMES.values() for name in names)
__getattr__, __dir__ = lazy_attributes(__name__, {n: home for home, names in _HOMES.items() for n in names},
                                       globals())
