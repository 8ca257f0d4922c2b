"""An ImageFolder dataset read with PIL: ``root/CLASS/**/*.jpg`` (torchvision's layout and class order).

Classes are the sorted names of the sub-directories (hidden ones skipped), labels their index, so a
model trained here has the head order torchvision's ``ImageFolder`` would give. Where the root holds
``train/`` and ``val/``, those are the splits (classes from ``train/``); otherwise every class is
split by a seeded shuffle, so a fixed seed always holds out the same images.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import torch
from torch.utils.data import Dataset

from ..errors import DataError
from .transforms import IMAGENET_MEAN, IMAGENET_STD, load_image

#: torchvision's IMG_EXTENSIONS
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

Sample = Tuple[Path, int]


def find_classes(root: Path) -> List[str]:
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist" if not root.exists() else f"{root} is not a directory")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise DataError(f"image folder {root} has no class directories (expected {root}/CLASS/IMAGE.jpg)")
    return classes


def _identity(path: Path, regular: bool = False):
    """(device, inode) of what ``path`` points to, or None if it cannot be read or (``regular``) is not a
    regular file: the same image reached through two links is one image, and a FIFO is never opened."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if regular and not stat.S_ISREG(st.st_mode):
        return None
    return (st.st_dev, st.st_ino)


def scan(root: Path, classes: Sequence[str], require_all: bool = True) -> List[Sample]:
    """Every image under ``root/CLASS`` (recursive, sorted) with its class index: regular files only, each
    file and folder once however many symlinks lead to it (no loop, no copies on both sides of a split)."""
    samples: List[Sample] = []
    empty = []
    seen_files: set = set()
    for index, name in enumerate(classes):
        found = []
        seen_dirs: set = set()
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
            ident = _identity(Path(dirpath))
            if ident is None or ident in seen_dirs:  # a symlink loop or a second link to a folder: once only
                dirnames[:] = []
                continue
            seen_dirs.add(ident)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for f in sorted(filenames):
                p = Path(dirpath) / f
                if not f.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                ident = _identity(p, regular=True)
                if ident is None or ident in seen_files:  # FIFOs, devices, dangling links; one image once
                    continue
                seen_files.add(ident)
                found.append(p)
        if not found:
            empty.append(name)
        samples += [(p, index) for p in found]
    if empty and require_all:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise DataError(f"image folder {root}: no images ({', '.join(IMAGE_EXTENSIONS)}) in class "
                        f"director{'y' if len(empty) == 1 else 'ies'} {shown}")
    return samples


def split_samples(samples: Sequence[Sample], val_fraction: float, seed: int) -> Tuple[List[Sample], List[Sample]]:
    """Per class, a seeded shuffle holds out ``val_fraction`` (at least one image where a class has two)."""
    by_class: Dict[int, List[Sample]] = {}
    for s in samples:
        by_class.setdefault(s[1], []).append(s)
    gen = torch.Generator().manual_seed(seed)
    train, val = [], []
    for label in sorted(by_class):
        items = by_class[label]
        order = torch.randperm(len(items), generator=gen).tolist()
        n_val = min(len(items) - 1, max(1, round(len(items) * val_fraction))) if len(items) > 1 else 0
        val += [items[i] for i in sorted(order[:n_val])]
        train += [items[i] for i in sorted(order[n_val:])]
    return train, val


class FolderImages(Dataset):
    """``(uint8 image [3, R, R], label)`` pairs; ``train`` turns on random-resized crop and flip."""

    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, samples: Sequence[Sample], classes: Sequence[str], resolution: int, train: bool):
        self.samples = list(samples)
        self.classes = list(classes)
        self.resolution = resolution
        self.train = train

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item: Union[int, Tuple[int, int]]) -> Tuple[torch.Tensor, int]:
        """``dataset[i]``, or ``dataset[i, seed]``: the augmentation drawn from ``seed`` (train sets)."""
        index, seed = item if isinstance(item, tuple) else (item, None)
        path, label = self.samples[index]
        gen = torch.Generator().manual_seed(seed) if self.train and seed is not None else None
        if self.train and gen is None:
            gen = torch.Generator().manual_seed(int(torch.randint(0, 2 ** 32, (1,))))
        return load_image(path, self.resolution, gen), label


@dataclass
class FolderSplits:
    train: FolderImages
    val: FolderImages
    classes: List[str]
    layout: str  # "train/ and val/" or "split by seed"


def image_folder(root, resolution: int, *, val_fraction: float = 0.1, seed: int = 0) -> FolderSplits:
    """The train and val sets of the image folder at ``root`` (see the module docstring)."""
    root = Path(root).expanduser()
    find_classes(root)  # a missing or empty root is reported as such, not as missing train/
    if (root / "train").is_dir() and (root / "val").is_dir():
        classes = find_classes(root / "train")
        val_classes = find_classes(root / "val")
        extra = sorted(set(val_classes) - set(classes))
        if extra:
            raise DataError(f"image folder {root}: val/ has classes that train/ lacks: {', '.join(extra[:5])}")
        train = scan(root / "train", classes)
        val = scan(root / "val", classes, require_all=False)
        if not val:
            raise DataError(f"image folder {root}: val/ has no images")
        layout = "train/ and val/"
    else:
        classes = find_classes(root)
        train, val = split_samples(scan(root, classes), val_fraction, seed)
        if not val:
            raise DataError(f"image folder {root}: too few images to hold out a validation split "
                            "(each class needs at least 2)")
        layout = f"split by seed {seed} ({val_fraction:g} held out)"
    if len(classes) < 2:
        raise DataError(f"image folder {root}: one class ({classes[0]}); classification needs at least 2")
    return FolderSplits(FolderImages(train, classes, resolution, train=True),
                        FolderImages(val, classes, resolution, train=False), classes, layout)
