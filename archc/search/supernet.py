"""The EfficientFormer supernet that latency-driven slimming trains (Li et al. 2022, Sec. 4).

One network holds every choice of a space over ``depth``, ``width`` and ``meta3d``: each stage at its widest
width and deepest depth, each block with its candidate paths (Meta4D, and in the last stage also Meta3D)
plus a skip, and each stage with a choice of width. Architecture parameters (``alpha``) weight the paths
and widths through Gumbel-softmax samples, so one backward pass trains weights and path preferences
together; after training, softmax(alpha) is each choice's importance.

Simplifications (docs/SLIMMING.md says why): a narrower width is a channel mask on the widest tensors, not
a slice of the weights; the Meta3D path runs on the stage's map through ``Flat`` and back, so every block
position may choose it (the spec language then keeps Meta3D blocks last); one classifier head, no
distillation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..nn.efficientformer import ConvBNDownsample, Meta3D, Meta4D, StemConvReLU

PATH_4D, PATH_3D, PATH_SKIP = "meta4d", "meta3d", "skip"


@dataclass(frozen=True)
class StageChoices:
    """What a space lets one stage vary: depth bounds, width choices (ascending), Meta3D bounds."""

    depth: Tuple[int, int]
    widths: Tuple[int, ...]
    meta3d: Tuple[int, int] = (0, 0)

    @property
    def paths(self) -> Tuple[str, ...]:
        return (PATH_4D, PATH_3D, PATH_SKIP) if self.meta3d[1] > 0 else (PATH_4D, PATH_SKIP)


class TokenPath(nn.Module):
    """A Meta3D block applied to an NCHW map (to tokens and back: pure layout, so exact)."""

    def __init__(self, block: Meta3D):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        y = self.block(x.flatten(2).transpose(1, 2))
        return y.transpose(1, 2).reshape(b, c, h, w)


class SuperBlock(nn.Module):
    """A weighted sum of a block position's paths (skip included) under one Gumbel-softmax sample."""

    def __init__(self, paths: Sequence[str], ops: Sequence[nn.Module]):
        super().__init__()
        self.paths = tuple(paths)
        self.ops = nn.ModuleList(ops)  # one per non-skip path, in ``paths`` order
        self.alpha = nn.Parameter(torch.zeros(len(paths)))

    def forward(self, x: torch.Tensor, tau: float) -> torch.Tensor:
        g = F.gumbel_softmax(self.alpha, tau=tau) if self.training else F.softmax(self.alpha, -1)
        out = 0
        k = 0
        for i, path in enumerate(self.paths):
            if path == PATH_SKIP:
                out = out + g[i] * x
            else:
                out = out + g[i] * self.ops[k](x)
                k += 1
        return out


class SuperStage(nn.Module):
    """Downsample to the widest width, width mask (Gumbel over the width choices), then the block positions."""

    def __init__(self, choices: StageChoices, in_chs: int, resolution: Tuple[int, int], mlp_ratio: float,
                 pool_size: int, downsample: bool, layer_scale: float):
        super().__init__()
        self.choices = choices
        width = choices.widths[-1]
        self.downsample = ConvBNDownsample(in_chs, width) if downsample else None
        self.width_alpha = nn.Parameter(torch.zeros(len(choices.widths)))
        self.register_buffer("masks", torch.stack([(torch.arange(width) < w).float() for w in choices.widths]))
        blocks = []
        for _ in range(choices.depth[1]):
            ops: List[nn.Module] = [Meta4D(width, pool_size, mlp_ratio, nn.GELU, layer_scale)]
            if PATH_3D in choices.paths:
                ops.append(TokenPath(Meta3D(width, resolution, mlp_ratio, nn.GELU, layer_scale)))
            blocks.append(SuperBlock(choices.paths, ops))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor, tau: float) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        g = F.gumbel_softmax(self.width_alpha, tau=tau) if self.training else F.softmax(self.width_alpha, -1)
        mask = (g[:, None] * self.masks).sum(0).view(1, -1, 1, 1)
        x = x * mask
        for block in self.blocks:
            x = block(x, tau) * mask
        return x


class SuperNet(nn.Module):
    """Stem, super stages, LayerNorm on tokens, mean, one linear classifier."""

    def __init__(self, stages: Sequence[StageChoices], resolutions: Sequence[Tuple[int, int]], num_classes: int,
                 mlp_ratios: Sequence[float], pool_sizes: Sequence[int], downsamples: Sequence[bool],
                 stem_width: Optional[int] = None, layer_scale: float = 1e-5):
        super().__init__()
        stem_width = stem_width or stages[0].widths[-1]
        self.stem = StemConvReLU(3, stem_width)
        prev, supers = stem_width, []
        for c, res, r, p, d in zip(stages, resolutions, mlp_ratios, pool_sizes, downsamples):
            supers.append(SuperStage(c, prev, res, r, p, d, layer_scale))
            prev = c.widths[-1]
        self.stages = nn.ModuleList(supers)
        self.norm = nn.LayerNorm(prev)
        self.head = nn.Linear(prev, num_classes)
        self.tau = 5.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x, self.tau)
        return self.head(self.norm(x.flatten(2).transpose(1, 2)).mean(1))

    def arch_parameters(self) -> List[nn.Parameter]:
        return [p for n, p in self.named_parameters() if n.endswith("alpha")]

    def weight_parameters(self) -> List[nn.Parameter]:
        return [p for n, p in self.named_parameters() if not n.endswith("alpha")]

    @torch.no_grad()
    def importances(self) -> dict:
        """softmax(alpha) per block position and per stage width: the importances slimming spends."""
        out = {"blocks": [], "widths": []}
        for stage in self.stages:
            out["blocks"].append([dict(zip(b.paths, F.softmax(b.alpha, -1).tolist())) for b in stage.blocks])
            out["widths"].append(dict(zip(stage.choices.widths, F.softmax(stage.width_alpha, -1).tolist())))
        return out


__all__ = ["PATH_3D", "PATH_4D", "PATH_SKIP", "StageChoices", "SuperBlock", "SuperNet", "SuperStage", "TokenPath"]
