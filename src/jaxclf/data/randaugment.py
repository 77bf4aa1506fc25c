"""RandAugment (Cubuk et al., 2020) on PIL images: ``num_layers`` operations
drawn uniformly from the paper's 14, each applied at one global ``magnitude``
(0..30 scale; 9 or 10 is typical for ImageNet)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

MAX_MAGNITUDE = 30.0


def _grey(image: Image.Image):
    """Mid-grey in the image's mode: what rotations and shifts uncover."""
    return 128 if len(image.getbands()) == 1 else (128,) * len(image.getbands())


def _signed(value: float, rng: np.random.Generator) -> float:
    return value if rng.random() < 0.5 else -value


def _shear(image: Image.Image, level: float, rng: np.random.Generator, axis: int) -> Image.Image:
    shear = _signed(0.3 * level, rng)
    matrix = (1, shear, 0, 0, 1, 0) if axis == 0 else (1, 0, 0, shear, 1, 0)
    return image.transform(image.size, Image.Transform.AFFINE, matrix, fillcolor=_grey(image))


def _translate(image: Image.Image, level: float, rng: np.random.Generator, axis: int) -> Image.Image:
    pixels = _signed(0.45 * level * image.size[axis], rng)  # up to 45% of the side, as timm
    matrix = (1, 0, pixels, 0, 1, 0) if axis == 0 else (1, 0, 0, 0, 1, pixels)
    return image.transform(image.size, Image.Transform.AFFINE, matrix, fillcolor=_grey(image))


def _enhance(enhancer):
    return lambda image, level, rng: enhancer(image).enhance(1.0 + _signed(0.9 * level, rng))


# Each op takes the image, a level in [0, 1] (magnitude / 30) and the rng.
OPS = {
    "identity": lambda image, level, rng: image,
    "auto_contrast": lambda image, level, rng: ImageOps.autocontrast(image),
    "equalize": lambda image, level, rng: ImageOps.equalize(image),
    "rotate": lambda image, level, rng: image.rotate(_signed(30.0 * level, rng), fillcolor=_grey(image)),
    "solarize": lambda image, level, rng: ImageOps.solarize(image, 256 - int(256 * level)),
    "color": _enhance(ImageEnhance.Color),
    "posterize": lambda image, level, rng: ImageOps.posterize(image, max(1, 8 - int(4 * level))),
    "contrast": _enhance(ImageEnhance.Contrast),
    "brightness": _enhance(ImageEnhance.Brightness),
    "sharpness": _enhance(ImageEnhance.Sharpness),
    "shear_x": lambda image, level, rng: _shear(image, level, rng, 0),
    "shear_y": lambda image, level, rng: _shear(image, level, rng, 1),
    "translate_x": lambda image, level, rng: _translate(image, level, rng, 0),
    "translate_y": lambda image, level, rng: _translate(image, level, rng, 1),
}


def rand_augment(image: Image.Image, rng: np.random.Generator, num_layers: int, magnitude: float) -> Image.Image:
    """Applies ``num_layers`` random operations of strength ``magnitude`` in turn."""
    level = min(magnitude, MAX_MAGNITUDE) / MAX_MAGNITUDE
    names = list(OPS)
    for index in rng.integers(0, len(names), size=num_layers):
        image = OPS[names[index]](image, level, rng)
    return image
