"""The network a spec compiles to: ``stem -> stages -> final_conv (optional) -> head``, wired from the kinds
in ``archc.blocks``. ``archc.build`` checks a spec first; ``ArchNet(spec)`` trusts it (the guards build it on
the meta device to count it)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .blocks import HEADS, MIXERS, STEMS, BuildContext
from .nn import ConvFFN, Mlp
from .spec import ACTIVATIONS, NORMS, Spec


class ArchNet(nn.Module):
    """A compiled spec: ``stem -> stages -> final_conv (optional) -> head``. ``spec`` is kept on the model."""

    def __init__(self, spec: Spec):
        super().__init__()
        self.spec = spec
        act = ACTIVATIONS[spec.activation]
        norm = NORMS[spec.norm]
        self.stem = STEMS[spec.stem.type].build(BuildContext(spec, spec.stem, act, norm, spec.in_chans))
        n = sum(spec.depths)  # linear from 0 to drop_path_rate over all blocks (timm), plain floats: meta-safe
        drop_rates = [spec.drop_path_rate * i / (n - 1) if n > 1 else 0.0 for i in range(n)]
        stages, prev, k = [], spec.stem_width, 0
        for i, stage in enumerate(spec.stages):
            ctx = BuildContext(spec, stage.mixer, act, norm, prev, stage, i, tuple(drop_rates[k:k + stage.depth]))
            stages.append(MIXERS[stage.mixer.type].build(ctx))
            prev, k = stage.width, k + stage.depth
        self.stages = nn.Sequential(*stages)
        final_conv, head, *top = HEADS[spec.head.type].build(BuildContext(spec, spec.head, act, norm, prev))
        self.final_conv = final_conv
        for name, mod in (top[0] if top else {"head": head}).items():  # in timm's order
            setattr(self, name, mod)
        self.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        if self.final_conv is not None:
            x = self.final_conv(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head_forward = HEADS[self.spec.head.type].forward
        if head_forward is not None:
            return head_forward(self, self.forward_features(x))
        return self.head(self.forward_features(x))


def _init_weights(m: nn.Module) -> None:
    """timm's FastViT init: truncated normal (std 0.02) for linear layers and 1x1 FFN convs."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (ConvFFN, Mlp)):
        convs = (m.conv.conv, m.fc1, m.fc2) if isinstance(m, ConvFFN) else (m.fc1, m.fc2)
        for conv in convs:
            nn.init.trunc_normal_(conv.weight, std=0.02)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
