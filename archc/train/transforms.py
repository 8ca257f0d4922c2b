"""PIL image -> uint8 CHW tensor at the training resolution, as timm/torchvision do it, without torchvision.

Train: random-resized crop (area ``scale``, aspect 3/4..4/3, torchvision's 10-try algorithm) and a
horizontal flip. Eval: the centre ``crop_pct`` of the shorter side (timm's 0.875), resized. Both crop
and resize in one ``Image.resize(box=...)`` call (PIL antialiases when shrinking, like torchvision's
``antialias=True``). Randomness comes from a generator the caller seeds per sample (the trainer draws
one seed per sample in its own process), so crops and flips are the same with or without DataLoader
worker processes.

Images stay uint8 until the batch is on its way into the model (``normalize``): collating and caching
uint8 costs a quarter of float32.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from ..errors import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_CROP_PCT = 0.875
TRAIN_SCALE = (0.25, 1.0)   # gentler than timm's 0.08 for ImageNet-length training: briefly trained nets need signal
TRAIN_RATIO = (3 / 4, 4 / 3)

Box = Tuple[float, float, float, float]


def pil():
    """The PIL module, or a DataError saying how to get it (reading image folders needs Pillow)."""
    try:
        from PIL import Image
    except ModuleNotFoundError:
        raise DataError("reading an image folder needs Pillow: pip install 'archc[train]'") from None
    return Image


def open_rgb(path: Path, min_side: int):
    """Decode ``path`` as RGB; JPEGs decode at the smallest power-of-2 reduction that keeps ``min_side``
    pixels on the shorter side (``draft``), which makes large photos several times cheaper."""
    Image = pil()
    try:
        with Image.open(path) as img:
            if img.format == "JPEG":
                w, h = img.size
                s = max(1, min(w, h) // max(1, min_side))
                img.draft("RGB", (math.ceil(w / s), math.ceil(h / s)))
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(f"cannot read image {path}: {exc}") from None


def center_box(w: int, h: int, crop_pct: float = EVAL_CROP_PCT) -> Box:
    side = min(w, h) * crop_pct
    return ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)


def random_resized_box(w: int, h: int, gen: torch.Generator, scale: Tuple[float, float] = TRAIN_SCALE,
                       ratio: Tuple[float, float] = TRAIN_RATIO) -> Box:
    """torchvision's ``RandomResizedCrop.get_params`` (10 tries, then a centre crop), drawing from ``gen``."""
    area = w * h
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        u = torch.rand(2, generator=gen).tolist()
        target = area * (scale[0] + (scale[1] - scale[0]) * u[0])
        aspect = math.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * u[1])
        cw = int(round(math.sqrt(target * aspect)))
        ch = int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            x0 = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
            y0 = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
            return (x0, y0, x0 + cw, y0 + ch)
    in_ratio = w / h
    if in_ratio < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        cw, ch = int(round(h * ratio[1])), h
    else:
        cw, ch = w, h
    return ((w - cw) / 2, (h - ch) / 2, (w + cw) / 2, (h + ch) / 2)


def to_uint8_chw(img) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def load_image(path: Path, resolution: int, gen: Optional[torch.Generator] = None) -> torch.Tensor:
    """``path`` -> uint8 tensor [3, resolution, resolution]: augmented from ``gen``, centre-cropped without."""
    Image = pil()
    img = open_rgb(path, resolution)
    w, h = img.size
    box = center_box(w, h) if gen is None else random_resized_box(w, h, gen)
    img = img.resize((resolution, resolution), Image.BILINEAR, box=box)
    if gen is not None and float(torch.rand(1, generator=gen)) < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return to_uint8_chw(img)


def normalize(x: torch.Tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> torch.Tensor:
    """uint8 batch [N, 3, H, W] -> float, ImageNet mean/std (what pretrained FastViTs expect)."""
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x.float() / 255.0 - m) / s
