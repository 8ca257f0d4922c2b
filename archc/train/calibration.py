"""Real images for int8 calibration and for the fidelity check (``archc export --precision``, ``archc bench
--precision int8 --calibrate-data``): data, so it lives with the training data readers.

Calibration images come from the training side of the data (never the images the fidelity is measured on):
for an IDX set (Fashion-MNIST) a class-balanced draw from its training split, measured on its official test
split; for an image folder, calibration from its training part and the check on its held-out part. Images are
preprocessed exactly as ``archc train`` fed them (resized once, normalised with the set's mean and std).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .idx import TensorImages, open_idx, resolve_dir, stratified_split
from .loop import preload, prepare

#: seed of the class-balanced calibration draw (fixed: one calibration set per data set and size)
CALIBRATION_SEED = 1


@dataclass
class QuantImages:
    calibration: np.ndarray      # N x C x H x W float32, preprocessed
    images: np.ndarray           # held-out images the fidelity is measured on
    labels: np.ndarray
    description: str


def quant_images(data: str, resolution: int, in_chans: int, calibration_images: int = 256,
                 eval_images: int = 2000) -> QuantImages:
    """Calibration and held-out images from ``data`` (``fashion-mnist``, an IDX folder or an image folder)."""
    if calibration_images < 1 or eval_images < 1:
        raise DataError(f"--calibration-images and --eval-images must be >= 1 (got {calibration_images}, {eval_images})")
    idx = resolve_dir(data)
    if idx is not None:
        s = open_idx(idx)
        (tx, ty), (ex, ey) = s.train, s.test
        n_cal = min(calibration_images, len(ty))
        _, cal = stratified_split(ty, n_cal, CALIBRATION_SEED)
        calib = TensorImages(tx[cal], ty[cal], s.classes, resolution, train=False, channels=in_chans)
        test = TensorImages(ex[:eval_images], ey[:eval_images], s.classes, resolution, train=False, channels=in_chans)
        cal_x, _ = preload(calib)
        test_x, test_y = preload(test)
        desc = (f"IDX set {idx}: {len(cal_x)} calibration images (class-balanced, training split), "
                f"{len(test_y)} held-out images (test split)")
        return QuantImages(prepare(cal_x, calib).numpy(), prepare(test_x, test).numpy(), test_y.numpy(), desc)
    from ..train.folder import image_folder
    from ..train.score import seeded_subset
    splits = image_folder(data, resolution, val_fraction=0.1, seed=0)
    calib = seeded_subset(splits.train, calibration_images, CALIBRATION_SEED)
    held = seeded_subset(splits.val, eval_images, 0)
    cal_x, _ = preload(calib)
    test_x, test_y = preload(held)
    if cal_x.shape[1] != in_chans:
        raise DataError(f"{data}: images have {cal_x.shape[1]} channels but the spec takes in_chans {in_chans}")
    desc = f"{data}: {len(cal_x)} calibration images (training part), {len(test_y)} held-out images"
    return QuantImages(prepare(cal_x, splits.train).numpy(), prepare(test_x, splits.val).numpy(), test_y.numpy(),
                       desc)
