"""Train-time building blocks (primitive torch layers, timm-compatible parameter names)."""
from .blocks import (Attention, ConvFFN, ConvPatchEmbed, Mlp, NormMixerBlock, Pooling, RepCPE,
                     RepLKPatchEmbed, RepMixer, RepMixerBlock)
from .layers import ConvBN, DropPath, LayerScale2d, SqueezeExcite
from .mobileone import LargeKernelConv, MobileOneBlock

__all__ = [
    "Attention", "ConvBN", "ConvFFN", "ConvPatchEmbed", "DropPath", "LargeKernelConv", "LayerScale2d",
    "Mlp", "MobileOneBlock", "NormMixerBlock", "Pooling", "RepCPE", "RepLKPatchEmbed", "RepMixer",
    "RepMixerBlock", "SqueezeExcite",
]
