"""A built-in, seeded, learnable image-classification set for trying the ``train`` objective without data.

Pure noise would rank every candidate at chance. Here each class is a texture: a fixed mix of a few
coloured plane waves with integer frequencies (so a cyclic shift keeps the class) at low spatial
frequency. A sample is its class texture at a random shift and contrast, plus a weaker texture of a
random other class and Gaussian noise. Telling classes apart needs spatial filters and some
capacity (mean colour carries nothing: every wave has zero mean), so a brief training separates
stronger from weaker candidates instead of saturating at once.

Every image is a function of (seed, split, index) alone, generated on demand: the same seed gives the
same data in any order, in any DataLoader worker, with no files and little memory.
"""
from __future__ import annotations

import math
from typing import List, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset

SPLITS = {"train": 0, "val": 1}
WAVES_PER_CLASS = 3
MAX_FREQ = 4        # cycles per image: low frequencies survive the stems' 4x downsampling
DISTRACTOR = 0.8    # weight of the other class's texture
NOISE = 1.5         # Gaussian noise std (the class texture has unit std). With DISTRACTOR, at the defaults
                    # (100 steps, 64 px): T8 58.8-63.1%, a 1-block 16-128-wide net 32.2-43.0% over training
                    # seeds 0-2 (chance 10%): hard enough not to saturate


def class_textures(num_classes: int, resolution: int, seed: int) -> torch.Tensor:
    """[C, 3, R, R] unit-std textures; they depend on the seed, not on the split."""
    gen = torch.Generator().manual_seed(10_007 * seed + 17)
    coords = torch.arange(resolution, dtype=torch.float32) / resolution
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    out = torch.zeros(num_classes, 3, resolution, resolution)
    for c in range(num_classes):
        for _ in range(WAVES_PER_CLASS):
            while True:
                kx, ky = torch.randint(-MAX_FREQ, MAX_FREQ + 1, (2,), generator=gen).tolist()
                if (kx, ky) != (0, 0):
                    break
            phase = float(torch.rand(1, generator=gen)) * 2 * math.pi
            colour = torch.randn(3, generator=gen)
            wave = torch.sin(2 * math.pi * (kx * xx + ky * yy) + phase)
            out[c] += colour.view(3, 1, 1) * wave
        out[c] /= out[c].std().clamp_min(1e-6)
    return out


class SyntheticImages(Dataset):
    """``(float image [3, R, R], label)``; labels cycle through the classes, so every split is balanced."""

    mean = std = None  # already centred, unit scale: no ImageNet normalisation

    def __init__(self, size: int, *, num_classes: int = 10, resolution: int = 64, seed: int = 0,
                 split: str = "train"):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}")
        self.size = size
        self.num_classes = num_classes
        self.resolution = resolution
        self.seed = seed
        self.split = split
        self.classes: List[str] = [f"texture{c}" for c in range(num_classes)]
        self.textures = class_textures(num_classes, resolution, seed)

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, item: Union[int, Tuple[int, int]]) -> Tuple[torch.Tensor, int]:
        index = item[0] if isinstance(item, tuple) else item  # no augmentation: the seed is not needed
        if not 0 <= index < self.size:
            raise IndexError(index)
        # torch's CPU generator keeps 32 bits of a seed: mix (seed, split, index) into 32 well-spread bits
        state = np.random.SeedSequence([self.seed, SPLITS[self.split], index]).generate_state(1)[0]
        gen = torch.Generator().manual_seed(int(state))
        label = index % self.num_classes
        other = (label + 1 + int(torch.randint(0, self.num_classes - 1, (1,), generator=gen))) % self.num_classes
        r = self.resolution
        dy, dx = torch.randint(0, r, (2,), generator=gen).tolist()
        dy2, dx2 = torch.randint(0, r, (2,), generator=gen).tolist()
        contrast = 0.6 + 0.8 * float(torch.rand(1, generator=gen))
        x = contrast * torch.roll(self.textures[label], (dy, dx), dims=(1, 2))
        x += DISTRACTOR * torch.roll(self.textures[other], (dy2, dx2), dims=(1, 2))
        x += NOISE * torch.randn(3, r, r, generator=gen)
        return x, label
