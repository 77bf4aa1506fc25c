"""Training-time augmentation, and the matching evaluation-time crop.

Two kinds of data, two paths:

* images held in memory at their final size (digits, MNIST, CIFAR): the batch
  is augmented at once with NumPy (``random_crop``: pad and shift;
  ``random_flip``), optionally with RandAugment per image;
* encoded images of any size (ImageNet, a folder): each is decoded
  (``jaxclf.data.decode``: a JPEG at the smallest scale its crop allows) and
  cropped on its own, straight into its row of the batch: ``inception_crop``
  (a random area and aspect ratio, resized) in training,
  ``resize_and_centre_crop`` in evaluation.

Randomness comes from a ``BatchRng`` seeded by ``(seed, step)``, so the
augmented batch of a step is the same in an uninterrupted run and after a
restart, and whatever the number of processes that share it. Mixup and
cutmix are not here: they mix labels too and run on device in the training
step (``jaxclf.objectives``).
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
from PIL import Image

from jaxclf.data.decode import decoded_image, image_size, jpeg_reduction
from jaxclf.data.randaugment import rand_augment


class BatchRng:
    """The randomness of one global batch of ``batch_size`` examples, seen by
    the process that reads its ``rows`` (default: all of them).

    Each draw is made for the whole global batch from one generator seeded by
    ``seed``, then cut to ``rows``: an example's augmentation depends on its
    position in the global batch, never on how many processes share it."""

    def __init__(self, seed: int | list[int], batch_size: int, rows: np.ndarray | None = None):
        self._generator = np.random.default_rng(seed)
        self.batch_size = batch_size
        self.rows = np.arange(batch_size) if rows is None else np.asarray(rows)

    def integers(self, low: int, high: int) -> np.ndarray:
        """One integer in ``[low, high)`` per example read."""
        return self._generator.integers(low, high, size=self.batch_size)[self.rows]

    def random(self) -> np.ndarray:
        """One float in ``[0, 1)`` per example read."""
        return self._generator.random(self.batch_size)[self.rows]

    def generators(self) -> list[np.random.Generator]:
        """An independent generator per example read (for per-image work in threads)."""
        return [np.random.default_rng(seed) for seed in self.integers(0, 2**63)]


def random_crop(images: np.ndarray, rng: BatchRng, padding: int, fill: float = 0) -> np.ndarray:
    """Pads each image by ``padding`` pixels of ``fill`` and crops a random
    window of the original size: a random shift of up to ``padding``."""
    batch, height, width, channels = images.shape
    padded = np.full((batch, height + 2 * padding, width + 2 * padding, channels), fill, images.dtype)
    padded[:, padding : padding + height, padding : padding + width] = images
    windows = np.lib.stride_tricks.sliding_window_view(padded, (height, width), axis=(1, 2))  # [B, dy, dx, C, H, W]
    dy, dx = rng.integers(0, 2 * padding + 1), rng.integers(0, 2 * padding + 1)
    return np.ascontiguousarray(windows[np.arange(batch), dy, dx].transpose(0, 2, 3, 1))


def random_flip(images: np.ndarray, rng: BatchRng) -> np.ndarray:
    """Mirrors a random half of the images left to right."""
    flip = rng.random() < 0.5
    images = images.copy()
    images[flip] = images[flip, :, ::-1]
    return images


def inception_box(
    width: int,
    height: int,
    rng: np.random.Generator,
    area_range: tuple[float, float] = (0.08, 1.0),
    aspect_range: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """A random ``(left, top, right, bottom)`` covering ``area_range`` of the image
    with an aspect ratio in ``aspect_range`` (log-uniform; Szegedy et al., 2015).
    After 10 failed draws, the largest centred box within the aspect range."""
    area = width * height
    for _ in range(10):
        target_area = area * rng.uniform(*area_range)
        aspect = math.exp(rng.uniform(math.log(aspect_range[0]), math.log(aspect_range[1])))
        crop_width = round(math.sqrt(target_area * aspect))
        crop_height = round(math.sqrt(target_area / aspect))
        if 0 < crop_width <= width and 0 < crop_height <= height:
            left = int(rng.integers(0, width - crop_width + 1))
            top = int(rng.integers(0, height - crop_height + 1))
            return left, top, left + crop_width, top + crop_height
    ratio = width / height
    crop_width, crop_height = width, height
    if ratio < aspect_range[0]:
        crop_height = round(width / aspect_range[0])
    elif ratio > aspect_range[1]:
        crop_width = round(height * aspect_range[1])
    left, top = (width - crop_width) // 2, (height - crop_height) // 2
    return left, top, left + crop_width, top + crop_height


def inception_crop(
    encoded: bytes, rng: np.random.Generator, size: tuple[int, int], channels: int, out: np.ndarray | None = None
) -> np.ndarray:
    """Decodes an image, as small as an ``inception_box`` of it allows, and resizes the box to ``size``
    (into ``out`` if given)."""
    width, height = image_size(encoded)
    left, top, right, bottom = inception_box(width, height, rng)
    with decoded_image(encoded, channels, jpeg_reduction((right - left, bottom - top), size)) as image:
        scale_x, scale_y = image.shape[1] / width, image.shape[0] / height
        window = image[
            math.floor(top * scale_y) : max(math.floor(top * scale_y) + 1, round(bottom * scale_y)),
            math.floor(left * scale_x) : max(math.floor(left * scale_x) + 1, round(right * scale_x)),
        ]
        return resized(window, size, out)


def resized(image: np.ndarray, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
    """``image`` resized to ``size`` (height, width), into ``out`` if given: bilinear, as big_vision's
    ``tf.image.resize``, or area averaging where it shrinks by half or more
    (a PNG; a JPEG is already decoded smaller), which bilinear would alias."""
    out = np.empty((*size, image.shape[2]), image.dtype) if out is None else out
    halves = image.shape[0] >= 2 * size[0] or image.shape[1] >= 2 * size[1]
    cv2.resize(image, size[::-1], dst=out, interpolation=cv2.INTER_AREA if halves else cv2.INTER_LINEAR)
    return out


def resize_and_centre_crop(
    image: np.ndarray, size: tuple[int, int], crop_fraction: float = 0.875, out: np.ndarray | None = None
) -> np.ndarray:
    """Evaluation view: the shorter side resized to ``size / crop_fraction``
    (256 for 224), then the central ``size`` window (copied into ``out`` if given)."""
    height, width = image.shape[:2]
    scale = max(size) / crop_fraction / min(width, height)
    image = resized(image, (max(size[0], round(height * scale)), max(size[1], round(width * scale))))
    top, left = (image.shape[0] - size[0]) // 2, (image.shape[1] - size[1]) // 2
    window = image[top : top + size[0], left : left + size[1]]
    if out is None:
        return window
    out[...] = window
    return out


def to_array(image: Image.Image, channels: int) -> np.ndarray:
    array = np.asarray(image, np.uint8)
    return array.reshape(*array.shape[:2], channels)


@dataclasses.dataclass
class Augmenter:
    """The configured training augmentations (also the ``data.augment`` config schema).

    In-memory batches: ``crop_padding`` (pad with black and shift), then
    ``horizontal_flip``, then RandAugment. Encoded images: ``inception_crop``
    (else a plain resize), then the flip and RandAugment."""

    crop_padding: int = 0  # pad by this many black pixels, crop back at a random shift (in-memory images)
    horizontal_flip: bool = False
    inception_crop: bool = False  # random area (8-100%) and aspect (3/4-4/3), resized (encoded images)
    randaugment_layers: int = 0  # RandAugment: operations per image (0: off)
    randaugment_magnitude: float = 9.0  # their strength, 0..30
    # The brightest raw pixel value (the digits: 16). RandAugment works on
    # 0..255 images: in-memory images are scaled to it and back.
    pixel_max: int = 255

    @property
    def active(self) -> bool:
        return self.crop_padding > 0 or self.horizontal_flip or self.randaugment_layers > 0

    def batch(self, images: np.ndarray, rng: BatchRng) -> np.ndarray:
        """Augments the rows ``rng`` reads of a batch of same-sized images ``[B, H, W, C]`` (uint8 or float)."""
        if self.crop_padding > 0:
            images = random_crop(images, rng, self.crop_padding)
        if self.horizontal_flip:
            images = random_flip(images, rng)
        if self.randaugment_layers > 0:
            channels = images.shape[-1]
            images = np.stack(
                [
                    self._randaugment(image.squeeze(-1) if channels == 1 else image, generator, channels)
                    for image, generator in zip(images, rng.generators(), strict=True)
                ]
            )
        return images

    def encoded(
        self,
        encoded: bytes,
        rng: np.random.Generator,
        size: tuple[int, int],
        channels: int,
        out: np.ndarray | None = None,
    ) -> np.ndarray:
        """Decodes and augments one encoded image to ``size`` (into ``out``, a ``[*size, channels]`` uint8 array)."""
        out = np.empty((*size, channels), np.uint8) if out is None else out
        if self.inception_crop:
            inception_crop(encoded, rng, size, channels, out)
        else:
            with decoded_image(encoded, channels, jpeg_reduction(image_size(encoded), size)) as image:
                resized(image, size, out)
        if self.horizontal_flip and rng.random() < 0.5:
            cv2.flip(out, 1, dst=out)
        if self.randaugment_layers > 0:
            pil_image = Image.fromarray(out.squeeze(-1) if channels == 1 else out)
            out[...] = to_array(
                rand_augment(pil_image, rng, self.randaugment_layers, self.randaugment_magnitude), channels
            )
        return out

    def _randaugment(self, image: np.ndarray, rng: np.random.Generator, channels: int) -> np.ndarray:
        """RandAugment of one in-memory image of raw values in ``0..pixel_max``, on the 0..255 scale its
        operations assume (a grey fill, solarize's threshold, auto-contrast's stretch), then back."""
        scale = 255.0 / self.pixel_max
        as_8_bit = np.clip(np.round(image.astype(np.float32) * scale), 0, 255).astype(np.uint8)
        augmented = to_array(
            rand_augment(Image.fromarray(as_8_bit), rng, self.randaugment_layers, self.randaugment_magnitude), channels
        )
        return np.round(augmented.astype(np.float32) / scale).astype(image.dtype)


def evaluation_view(
    encoded: bytes, size: tuple[int, int], channels: int, crop_fraction: float = 0.875, out: np.ndarray | None = None
) -> np.ndarray:
    """Decodes one encoded image (a JPEG as small as the view allows) and takes its centre crop at ``size``."""
    shorter = round(max(size) / crop_fraction)
    with decoded_image(encoded, channels, jpeg_reduction(image_size(encoded), (shorter, shorter))) as image:
        return resize_and_centre_crop(image, size, crop_fraction, out)
