"""RandAugment: each operation's effect grows with the magnitude, on the dataset's own pixel range."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from jaxclf.data.augment import Augmenter, BatchRng
from jaxclf.data.randaugment import MAX_MAGNITUDE, OPS

WITH_MAGNITUDE = [name for name in OPS if name not in ("identity", "auto_contrast", "equalize")]


def natural_image(seed: int) -> Image.Image:
    """A smooth colour gradient with texture: something every operation can change."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:32, 0:32] / 31.0
    channels = [x, y, (x + y) / 2]
    image = np.stack([60 + 120 * c + rng.normal(0, 12, c.shape) for c in channels], axis=-1)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def change(name: str, magnitude: float) -> float:
    """Mean absolute pixel change the operation makes at ``magnitude``, over 8 images and draws."""
    changes = []
    for seed in range(8):
        image = natural_image(seed)
        out = OPS[name](image, magnitude / MAX_MAGNITUDE, np.random.default_rng(seed))
        changes.append(np.abs(np.asarray(out, np.float32) - np.asarray(image, np.float32)).mean())
    return float(np.mean(changes))


@pytest.mark.parametrize("name", WITH_MAGNITUDE)
def test_each_operation_does_more_at_a_higher_magnitude(name):
    weak, medium, strong = (change(name, magnitude) for magnitude in (2, 10, 30))
    assert weak < medium < strong, (weak, medium, strong)
    assert strong > 3  # pixel levels out of 255: visible


@pytest.mark.parametrize("name", ["auto_contrast", "equalize"])
def test_the_operations_without_a_magnitude_change_a_dull_image(name):
    dull = Image.fromarray((100 + np.asarray(natural_image(0)) // 4).astype(np.uint8))
    out = OPS[name](dull, 1.0, np.random.default_rng(0))
    assert np.abs(np.asarray(out, np.float32) - np.asarray(dull, np.float32)).mean() > 10


def test_on_the_digits_range_randaugment_stays_in_it_and_solarize_acts():
    digits = load_digits().images[:64].astype(np.uint8)[..., None]  # 0..16
    augmenter = Augmenter(randaugment_layers=3, randaugment_magnitude=9, pixel_max=16)
    augmented = augmenter.batch(digits, BatchRng(0, len(digits)))
    assert augmented.dtype == np.uint8 and augmented.max() <= 16 and augmented.shape == digits.shape
    assert np.abs(augmented.astype(int) - digits).mean() > 0.5  # it does something
    # Solarize at magnitude 9 inverts the brightest pixels: on 0..255 it finds some.
    solarized = [
        OPS["solarize"](Image.fromarray((image[..., 0].astype(np.float32) * 255 / 16).astype(np.uint8)), 0.3, None)
        for image in digits
    ]
    assert any(np.asarray(image).max() < 255 * 12 / 16 for image in solarized)
    # Without knowing the range (0..255 assumed), a rotation fills with grey 128: far outside 0..16.
    unaware = Augmenter(randaugment_layers=3, randaugment_magnitude=9).batch(digits, BatchRng(0, len(digits)))
    assert unaware.max() > 16
