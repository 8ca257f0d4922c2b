"""Make ``tests/data/fashion-mnist-slice``: a seeded, class-balanced slice of Fashion-MNIST (600 training and
200 test images) as the same four IDX ``.gz`` files, so the real-data path is tested where Debian's
``dataset-fashion-mnist`` package is not installed.

    python3 tests/data/make_fashion_mnist_slice.py   # needs /usr/share/datasets/fashion-mnist
"""
import gzip
import shutil
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent / "fashion-mnist-slice"
sys.path.insert(0, str(HERE.parents[2]))
from archc.train.idx import DEBIAN_DIR, FILES, read_split  # noqa: E402

PER_CLASS = {"train": 60, "test": 20}


def write_idx(path: Path, t: torch.Tensor) -> None:
    head = bytes([0, 0, 0x08, t.dim()]) + b"".join(int(n).to_bytes(4, "big") for n in t.shape)
    with gzip.GzipFile(path, "wb", mtime=0) as f:  # mtime 0: the same bytes every time
        f.write(head + t.contiguous().numpy().tobytes())


def main() -> None:
    HERE.mkdir(exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    for split, (img_name, lab_name) in FILES.items():
        images, labels = read_split(DEBIAN_DIR, split)
        keep = []
        for c in range(10):
            idx = (labels == c).nonzero().flatten()
            keep.append(idx[torch.randperm(len(idx), generator=gen)[:PER_CLASS[split]]])
        keep = torch.cat(keep).sort().values
        write_idx(HERE / f"{img_name}.gz", images[keep, 0])
        write_idx(HERE / f"{lab_name}.gz", labels[keep].to(torch.uint8))
    shutil.copy("/usr/share/doc/dataset-fashion-mnist/copyright", HERE / "LICENSE")


if __name__ == "__main__":
    main()
