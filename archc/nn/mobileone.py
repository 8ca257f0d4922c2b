"""Over-parameterized conv blocks whose branches fold into a single conv at deploy time."""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn as nn

from .geometry import conv_padding
from .layers import ConvBN, SqueezeExcite


class MobileOneBlock(nn.Module):
    """MobileOne block: ``act(se(sum of kxk conv+BN branches, 1x1 scale branch, identity BN)))``.

    The identity BN exists only where input and output shapes agree (same width, stride 1). The
    squeeze-excite is ``se`` (timm FastViT) or, with ``se_name="attn"``, ``attn`` (timm ByobNet/MobileOne).

    ``quant_friendly`` is QARepVGG's block (Chu et al. 2023, "Make RepVGG Greater Again"): BatchNorm only on the
    kxk branches, a bare 1x1 conv and a bare identity, and one BatchNorm after the sum (``norm``). Per-branch
    BatchNorms on the identity and 1x1 paths let the folded kernel's per-channel ranges drift apart, which is what
    breaks per-tensor int8 after folding; the block still folds exactly into one conv.
    """

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int = 1, groups: int = 1,
                 conv_branches: int = 1, scale_branch: bool = True, act: Optional[nn.Module] = None,
                 se_ratio: Optional[float] = None, se_name: str = "se", identity_last: bool = False,
                 quant_friendly: bool = False):
        super().__init__()
        self.se_name = se_name
        self.identity_last = identity_last  # timm ByobNet sums scale, kxk..., identity (FastViT: scale, identity, kxk)
        se = SqueezeExcite(out_chs, se_ratio) if se_ratio else None
        if se_name == "se":
            self.se = se
        same = in_chs == out_chs and stride == 1
        self.identity = (nn.Identity() if quant_friendly else nn.BatchNorm2d(in_chs)) if same else None
        self.conv_kxk = (nn.ModuleList(ConvBN(in_chs, out_chs, kernel, stride, groups) for _ in range(conv_branches))
                         if conv_branches > 0 else None)
        self.conv_scale = None
        if kernel > 1 and scale_branch:
            self.conv_scale = (nn.Conv2d(in_chs, out_chs, 1, stride, conv_padding(1, stride), groups=groups, bias=False)
                               if quant_friendly
                               else ConvBN(in_chs, out_chs, 1, stride, groups))
        self.norm = nn.BatchNorm2d(out_chs) if quant_friendly else None  # QARepVGG: one BN after the sum
        if se_name != "se":
            setattr(self, se_name, se)
        self.act = act
        if self.identity is None and self.conv_kxk is None and self.conv_scale is None:
            raise ValueError("MobileOneBlock needs at least one branch")  # guarded by spec rules

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches: List[torch.Tensor] = []
        if self.conv_scale is not None:
            branches.append(self.conv_scale(x))
        if self.identity is not None and not self.identity_last:
            branches.append(self.identity(x))
        if self.conv_kxk is not None:
            for branch in self.conv_kxk:
                branches.append(branch(x))
        if self.identity is not None and self.identity_last:
            branches.append(self.identity(x))
        out = branches[0]
        for b in branches[1:]:
            out = out + b
        if self.norm is not None:
            out = self.norm(out)
        se = getattr(self, self.se_name)
        if se is not None:
            out = se(out)
        if self.act is not None:
            out = self.act(out)
        return out


class LargeKernelConv(nn.Module):
    """RepLKNet-style depthwise large-kernel conv+BN with a parallel small-kernel conv+BN, then optional
    squeeze-excite and activation (MobileCLIP's MCi models use both; the branches still fold into one conv)."""

    def __init__(self, in_chs: int, out_chs: int, kernel: int, stride: int, small_kernel: Optional[int],
                 se_ratio: Optional[float] = None, act: Optional[nn.Module] = None):
        super().__init__()
        self.large_conv = ConvBN(in_chs, out_chs, kernel, stride, groups=in_chs)
        self.small_conv = (ConvBN(in_chs, out_chs, small_kernel, stride, groups=in_chs)
                           if small_kernel is not None else None)
        self.se = SqueezeExcite(out_chs, se_ratio) if se_ratio else None
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.large_conv(x)
        if self.small_conv is not None:
            out = out + self.small_conv(x)
        if self.se is not None:
            out = self.se(out)
        if self.act is not None:
            out = self.act(out)
        return out
