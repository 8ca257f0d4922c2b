"""Fashion-MNIST (and MNIST) from their IDX files: the real data that installs offline here.

``apt-get install dataset-fashion-mnist`` puts ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz`` in
``/usr/share/datasets/fashion-mnist/``; ``--data fashion-mnist`` reads them there, ``--data DIR`` from any
folder holding the four files (gzipped or not). The IDX format (LeCun's): a big-endian magic number whose
third byte is the element type (0x08: uint8) and fourth the number of dimensions, one big-endian uint32
per dimension, then the data. Every read is bounded by the header and checked: a wrong magic, a truncated
archive or a label count that differs from the image count is one ``DataError`` naming the file.
"""
from __future__ import annotations

import gzip
import os
import stat
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import torch

from ..errors import DataError

#: where Debian's dataset-fashion-mnist package installs the files
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
#: the names ``--data`` takes for the installed set
ALIASES = {"fashion-mnist": DEBIAN_DIR, "fashion_mnist": DEBIAN_DIR}
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot")
#: Fashion-MNIST's training-set pixel mean and std (on 0..1), for normalising one grey channel
MEAN, STD = (0.2860,), (0.3530,)
#: no IDX file of a real image set is larger than this (Fashion-MNIST's train images: 47 MB unpacked)
MAX_BYTES = 1 << 31
UINT8 = 0x08


def resolve_dir(data: str) -> Optional[Path]:
    """The folder holding the IDX files that ``data`` names, or None when ``data`` is not an IDX set."""
    if data in ALIASES:
        folder = ALIASES[data]
        if not folder.is_dir():
            raise DataError(f"--data {data}: {folder} does not exist; install it with "
                            "`apt-get install dataset-fashion-mnist` or pass a folder holding the four IDX files")
        return folder
    folder = Path(data).expanduser()
    if folder.is_dir() and any(find_file(folder, name) for name in FILES["train"]):
        return folder
    return None


def find_file(folder: Path, stem: str) -> Optional[Path]:
    for name in (stem + ".gz", stem):
        p = folder / name
        if p.exists():
            return p
    return None


def _read(path: Path, limit: int) -> bytes:
    """At most ``limit`` bytes of ``path`` (gunzipped if it ends in .gz): a regular file only."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise DataError(f"{path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{path}: not a regular file")
    try:
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rb") as f:
            return f.read(limit + 1)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: cannot read ({exc}); the archive is damaged or truncated") from None


def read_idx(path: Path, ndim: int) -> torch.Tensor:
    """An IDX file of uint8 with ``ndim`` dimensions as a tensor, or a DataError naming what is wrong."""
    head = 4 + 4 * ndim
    data = _read(path, MAX_BYTES)
    if len(data) > MAX_BYTES:
        raise DataError(f"{path}: larger than {MAX_BYTES >> 20} MiB unpacked; not an image-set IDX file")
    if len(data) < head:
        raise DataError(f"{path}: {len(data)} bytes, shorter than an IDX header; the file is truncated")
    zero, dtype, dims = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or dtype != UINT8 or dims != ndim:
        raise DataError(f"{path}: magic number 0x{int.from_bytes(data[:4], 'big'):08x} is not an IDX file of "
                        f"uint8 with {ndim} dimension{'s' if ndim > 1 else ''} (expected 0x{0x800 + ndim:08x})")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    size = 1
    for n in shape:
        size *= n
    if len(data) - head != size:
        what = "truncated" if len(data) - head < size else "longer than its header says"
        raise DataError(f"{path}: header says {'x'.join(map(str, shape))} = {size} bytes of data, the file holds "
                        f"{len(data) - head}; it is {what}")
    return torch.frombuffer(bytearray(data[head:]), dtype=torch.uint8).reshape(shape)


def read_split(folder: Path, split: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """(uint8 images [N, 1, 28, 28], int64 labels [N]) of ``split`` ("train" or "test")."""
    names = FILES[split]
    paths = [find_file(folder, n) for n in names]
    missing = [n for n, p in zip(names, paths) if p is None]
    if missing:
        raise DataError(f"{folder}: missing {', '.join(m + '.gz' for m in missing)} (an IDX set needs "
                        f"{', '.join(n + '.gz' for pair in FILES.values() for n in pair)})")
    images, labels = read_idx(paths[0], 3), read_idx(paths[1], 1)
    if len(images) != len(labels):
        raise DataError(f"{folder}: {paths[0].name} holds {len(images)} images but {paths[1].name} "
                        f"{len(labels)} labels")
    if len(labels) and int(labels.max()) >= len(CLASSES):
        raise DataError(f"{paths[1]}: label {int(labels.max())} is out of range (valid: 0 to {len(CLASSES) - 1})")
    return images.unsqueeze(1).contiguous(), labels.long()


@dataclass
class IdxSet:
    """The two official splits of an IDX image set (the test split is only ever reported)."""

    folder: Path
    train: Tuple[torch.Tensor, torch.Tensor]
    test: Tuple[torch.Tensor, torch.Tensor]
    classes: Tuple[str, ...] = CLASSES


def open_idx(folder: Path) -> IdxSet:
    return IdxSet(folder, read_split(folder, "train"), read_split(folder, "test"))


class TensorImages(torch.utils.data.Dataset):
    """``(uint8 image [C, R, R], label)`` from images held in memory, resized once to ``resolution``.

    Augmentation for small centred images (the standard Fashion-MNIST/CIFAR recipe): a random crop of the
    image padded by ``resolution // 8`` zeros and a horizontal flip, drawn from the per-sample seed that
    ``SeededOrder`` hands out (``dataset[i, seed]``), so batches are the same with or without workers.
    ``channels`` 3 repeats the grey channel (for specs with ``in_chans: 3``); 1 keeps it.
    """

    mean, std = MEAN, STD

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, classes, resolution: int, train: bool,
                 channels: int = 1):
        if images.shape[-1] != resolution or images.shape[-2] != resolution:
            images = torch.nn.functional.interpolate(images.float(), size=(resolution, resolution),
                                                     mode="bilinear", antialias=True, align_corners=False)
            images = images.round().clamp(0, 255).to(torch.uint8)
        self.images, self.labels = images, labels
        self.classes = list(classes)
        self.resolution, self.train, self.channels = resolution, train, channels
        self.pad = max(1, resolution // 8)
        if channels != 1:
            self.mean, self.std = MEAN * channels, STD * channels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item) -> Tuple[torch.Tensor, int]:
        index, seed = item if isinstance(item, tuple) else (item, None)
        x = self.images[index]
        if self.train:
            gen = torch.Generator().manual_seed(seed if seed is not None else int(torch.randint(0, 2 ** 32, (1,))))
            dy, dx, flip = torch.randint(0, 2 * self.pad + 1, (3,), generator=gen).tolist()
            padded = torch.nn.functional.pad(x, (self.pad,) * 4)
            x = padded[:, dy:dy + self.resolution, dx:dx + self.resolution]
            if flip % 2:
                x = x.flip(-1)
        if self.channels != 1:
            x = x.expand(self.channels, -1, -1)
        return x.contiguous(), int(self.labels[index])


def stratified_split(labels: torch.Tensor, val_images: int, seed: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val) of a seeded, class-balanced hold-out of ``val_images`` from the training set."""
    gen = torch.Generator().manual_seed(seed)
    classes = torch.unique(labels)
    per_class = max(1, val_images // len(classes))
    train, val = [], []
    for c in classes.tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=gen)]
        k = min(per_class, len(idx) - 1)
        val.append(idx[:k])
        train.append(idx[k:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values
