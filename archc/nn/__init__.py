"""Train-time building blocks (primitive torch layers, timm-compatible parameter names)."""
from .blocks import (Attention, ConvFFN, ConvPatchEmbed, MetaFormerBlock, Mlp, NormMixerBlock, Pooling, RepCPE,
                     RepLKPatchEmbed, RepMixer, RepMixerBlock)
from .layers import ConvBN, DropPath, LayerScale2d, Scale, SqueezeExcite
from .mobileone import LargeKernelConv, MobileOneBlock
from .stage import ClassifierHead, Stage

__all__ = [
    "Attention", "ClassifierHead", "ConvBN", "ConvFFN", "ConvPatchEmbed", "DropPath", "LargeKernelConv",
    "LayerScale2d", "MetaFormerBlock", "Mlp", "MobileOneBlock", "NormMixerBlock", "Pooling", "RepCPE",
    "RepLKPatchEmbed", "RepMixer", "RepMixerBlock", "Scale", "SqueezeExcite", "Stage",
]
