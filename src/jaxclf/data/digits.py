"""The embedded default dataset: scikit-learn's 8x8 handwritten digits as a TFDS builder.

The 1,797 images ship inside scikit-learn, so preparing this dataset needs no
network. The splits are fixed by a seeded permutation of the original order:

==========  ========  ===========================
split       examples  permutation slice (seed 0)
==========  ========  ===========================
train       1,300     ``perm[:1300]``
validation  200       ``perm[1300:1500]``
test        297       ``perm[1500:]``
==========  ========  ===========================

Examples are stored in that order. Pixels are the original integer
intensities 0..16 stored as ``uint8``.

Configs: ``digits/classes`` (the default; labels 0..9) and ``digits/parity``
(the same images labelled even 0 / odd 1: a two-class dataset).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

SPLIT_SEED = 0
SPLIT_SIZES = {"train": 1300, "validation": 200, "test": 297}
IMAGE_SHAPE = (8, 8, 1)


def split_indices() -> dict[str, np.ndarray]:
    """Indices into ``sklearn.datasets.load_digits()`` for each split."""
    total = sum(SPLIT_SIZES.values())
    permutation = np.random.default_rng(SPLIT_SEED).permutation(total)
    bounds = np.cumsum([0, *SPLIT_SIZES.values()])
    return {
        name: permutation[start:stop] for name, start, stop in zip(SPLIT_SIZES, bounds[:-1], bounds[1:], strict=True)
    }


class DigitsConfig(tfds.core.BuilderConfig):
    """Which label each image carries."""

    def __init__(self, *, class_names: list[str], **kwargs):
        super().__init__(version=tfds.core.Version("1.0.0"), **kwargs)
        self.class_names = class_names


class Digits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's handwritten digits (UCI ML optical recognition), 8x8 grey."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Seeded 1,300 / 200 / 297 split of the 1,797 images."}
    BUILDER_CONFIGS: ClassVar[list[DigitsConfig]] = [
        DigitsConfig(name="classes", description="Labels 0..9.", class_names=[str(d) for d in range(10)]),
        DigitsConfig(name="parity", description="Labels even (0) / odd (1).", class_names=["even", "odd"]),
    ]

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=IMAGE_SHAPE, dtype=np.uint8),
                    "label": tfds.features.ClassLabel(names=self.builder_config.class_names),
                }
            ),
            supervised_keys=("image", "label"),
            disable_shuffling=True,  # store each split in its documented order
            homepage="https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # The data ships with scikit-learn; nothing is downloaded.
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = digits.images.astype(np.uint8)[..., None]
        labels = digits.target % len(self.builder_config.class_names)  # parity: digit mod 2
        return {name: self._generate_examples(images, labels, indices) for name, indices in split_indices().items()}

    def _generate_examples(
        self, images: np.ndarray, labels: np.ndarray, indices: np.ndarray
    ) -> Iterator[tuple[int, dict]]:
        # Keyed by position: with shuffling disabled TFDS stores examples in key order.
        for position, index in enumerate(indices):
            yield position, {"image": images[index], "label": int(labels[index])}
