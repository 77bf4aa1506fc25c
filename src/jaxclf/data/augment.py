"""Training-time image augmentation on host batches (NumPy, vectorised over the batch).

Each batch's randomness comes from ``(seed, step, process)``, so the augmented
batch of a step is the same in an uninterrupted run and after a restart.
Mixup and cutmix are not here: they mix labels too and run on device in the
training step (``jaxclf.targets``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np


def random_crop(images: np.ndarray, rng: np.random.Generator, padding: int, fill: Sequence[float]) -> np.ndarray:
    """Pads each image by ``padding`` pixels of ``fill`` (per channel) and crops
    a random window of the original size: a random shift of up to ``padding``."""
    batch, height, width, channels = images.shape
    padded = np.empty((batch, height + 2 * padding, width + 2 * padding, channels), images.dtype)
    padded[...] = np.asarray(fill, images.dtype)
    padded[:, padding : padding + height, padding : padding + width] = images
    windows = np.lib.stride_tricks.sliding_window_view(padded, (height, width), axis=(1, 2))  # [B, dy, dx, C, H, W]
    dy, dx = rng.integers(0, 2 * padding + 1, size=(2, batch))
    return np.ascontiguousarray(windows[np.arange(batch), dy, dx].transpose(0, 2, 3, 1))


def random_flip(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mirrors a random half of the images left to right."""
    flip = rng.random(len(images)) < 0.5
    return np.where(flip[:, None, None, None], images[:, :, ::-1], images)


@dataclasses.dataclass(frozen=True)
class Augmenter:
    """The configured augmentations, applied in order: crop, then flip.

    ``fill`` is the normalised value of a black pixel (``-mean / std``), so the
    padding looks like the background of the raw image."""

    crop_padding: int = 0
    horizontal_flip: bool = False
    fill: tuple[float, ...] = (0.0,)

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.horizontal_flip

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.crop_padding > 0:
            images = random_crop(images, rng, self.crop_padding, self.fill)
        if self.horizontal_flip:
            images = random_flip(images, rng)
        return images
