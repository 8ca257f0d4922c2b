"""The containers every compiled spec shares: a stage and the classifier head."""
from __future__ import annotations

from typing import List, Optional

import torch
import torch.nn as nn


class Stage(nn.Module):
    """``downsample`` (optional) -> ``pos_emb`` (optional) -> ``blocks`` (timm FastViT/MetaFormer stage)."""

    def __init__(self, downsample: Optional[nn.Module], pos_emb: Optional[nn.Module], blocks: List[nn.Module]):
        super().__init__()
        self.downsample = downsample
        self.pos_emb = pos_emb
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            x = self.downsample(x)
        if self.pos_emb is not None:
            x = self.pos_emb(x)
        return self.blocks(x)


class ClassifierHead(nn.Module):
    """Optional norm, global average pool, optional norm of the pooled vector, optional dropout, linear
    (``head.fc``; the norm is ``head.norm`` either way, as in timm)."""

    def __init__(self, in_chs: int, num_classes: int, drop_rate: float, norm: Optional[nn.Module] = None,
                 norm_after_pool: bool = False):
        super().__init__()
        self.norm = norm
        self.norm_after_pool = norm_after_pool
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else None
        self.fc = nn.Linear(in_chs, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm is not None and not self.norm_after_pool:
            x = self.norm(x)
        x = x.mean((2, 3))
        if self.norm is not None and self.norm_after_pool:
            x = self.norm(x)
        if self.drop is not None:
            x = self.drop(x)
        return self.fc(x)
