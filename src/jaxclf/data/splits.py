"""The train, validation and test splits of a run: which examples, and how they are read.

Every split is random access: ``read(indices, rng)`` returns raw images (at
the configured ``image_shape``) and int32 labels for positions ``indices``;
``rng`` is given in training (augment) and ``None`` in evaluation.

* ``InMemorySplit``: small datasets (digits, MNIST, CIFAR) are decoded once
  and kept in host memory as uint8; batches are gathered and augmented with
  NumPy.
* ``EncodedSplit``: large datasets (ImageNet) keep their images encoded on
  disk; each batch's examples are read and decoded in a thread pool, cropped
  to size (Inception crop in training, centre crop in evaluation).

Where a dataset has no validation split, ``data.validation_holdout`` examples
are held out of train with a fixed seed (big_vision's "minival"), the same for
every run. ``data.train_examples`` trains on a seeded subset: the first N of a
permutation, so subsets are nested across N for the same ``data.subset_seed``.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Any, Protocol

import numpy as np

from jaxclf.config.choices import SplitName
from jaxclf.config.schema import DataConfig
from jaxclf.data.augment import Augmenter, BatchRng, evaluation_view
from jaxclf.data.source import Source, open_builder, open_folder, open_source
from jaxclf.errors import ConfigError

HOLDOUT_SEED = 0  # fixed: a dataset's minival is the same for every run


class Split(Protocol):
    @property
    def source_indices(self) -> np.ndarray | None:
        """Positions in the underlying TFDS split."""

    @property
    def augmented(self) -> bool:
        """Whether training reads draw randomness (else ``read`` ignores ``rng``)."""

    def __len__(self) -> int: ...

    def read(self, indices: np.ndarray, rng: BatchRng | None = None) -> tuple[np.ndarray, np.ndarray]: ...


@dataclasses.dataclass(frozen=True)
class InMemorySplit:
    """Decoded uint8 images and int32 labels in host memory."""

    images: np.ndarray  # [N, H, W, C]
    labels: np.ndarray  # [N]
    augment: Augmenter | None = None
    source_indices: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def augmented(self) -> bool:
        return self.augment is not None and self.augment.active

    def read(self, indices: np.ndarray, rng: BatchRng | None = None) -> tuple[np.ndarray, np.ndarray]:
        images = self.images[indices]
        if rng is not None and self.augment is not None and self.augment.active:
            images = self.augment.batch(images, rng)
        return images, self.labels[indices]


@dataclasses.dataclass(frozen=True)
class EncodedSplit:
    """Encoded images read by index and decoded per batch, in parallel threads,
    each straight into its row of the batch."""

    source: Source  # records with undecoded "image" bytes
    source_indices: np.ndarray
    image_shape: tuple[int, ...]  # [H, W, C]
    augment: Augmenter
    workers: int = 4
    _pool: concurrent.futures.ThreadPoolExecutor = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One pool for the split's life: every batch reuses its threads rather than starting new ones.
        pool = concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="jaxclf-decode")
        object.__setattr__(self, "_pool", pool)

    def __len__(self) -> int:
        return len(self.source_indices)

    @property
    def augmented(self) -> bool:
        return True  # a random crop at least

    def read(self, indices: np.ndarray, rng: BatchRng | None = None) -> tuple[np.ndarray, np.ndarray]:
        positions = self.source_indices[indices]
        # One generator per example: threads never share one.
        generators = rng.generators() if rng is not None else [None] * len(positions)
        images = np.empty((len(positions), *self.image_shape), np.uint8)
        labels = list(self._pool.map(self._example, positions, generators, images))
        return images, np.asarray(labels, np.int32)

    def _example(self, position: int, rng: np.random.Generator | None, out: np.ndarray) -> int:
        """Decodes the record at ``position`` into ``out``; returns its label."""
        record = self.source[int(position)]
        size, channels = (self.image_shape[0], self.image_shape[1]), self.image_shape[2]
        if rng is None:
            evaluation_view(record["image"], size, channels, out=out)
        else:
            self.augment.encoded(record["image"], rng, size, channels, out)
        return int(record["label"])


def synthetic_split(
    num_examples: int, image_shape: tuple[int, ...], num_classes: int, seed: int, augment: Augmenter | None = None
) -> InMemorySplit:
    """``num_examples`` uniform random uint8 images with uniform labels, fixed by ``seed``
    (``data=synthetic``: benchmarks and smoke tests without a dataset)."""
    rng = np.random.default_rng([seed, num_examples])
    images = rng.integers(0, 256, size=(num_examples, *image_shape), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=num_examples, dtype=np.int32)
    return InMemorySplit(images, labels, augment, np.arange(num_examples))


def read_in_memory(
    source: Source, positions: np.ndarray, image_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Decodes the examples at ``positions`` into arrays."""
    images = np.empty((len(positions), *image_shape), np.uint8)
    labels = np.empty(len(positions), np.int32)
    for row, position in enumerate(positions):
        example = source[int(position)]
        image = np.asarray(example["image"])
        if image.size != images[row].size:
            raise ConfigError(
                f"data.image_shape={list(image_shape)} does not match the dataset's images {list(image.shape)}; "
                "set it to their shape, or data.in_memory=false to crop and resize them"
            )
        images[row] = image.reshape(image_shape)
        labels[row] = example["label"]
    return images, labels


def holdout(num_examples: int, num_held_out: int) -> tuple[np.ndarray, np.ndarray]:
    """``(kept, held_out)`` positions: a fixed-seed random ``num_held_out`` of ``num_examples``."""
    if not 0 < num_held_out < num_examples:
        raise ConfigError(
            f"data.validation_holdout={num_held_out} is not valid; it must be between 1 and "
            f"{num_examples - 1} (the training split has {num_examples} examples)"
        )
    permutation = np.random.default_rng(HOLDOUT_SEED).permutation(num_examples)
    return np.sort(permutation[num_held_out:]), np.sort(permutation[:num_held_out])


def subset(positions: np.ndarray, num_examples: int, seed: int) -> np.ndarray:
    """The first ``num_examples`` of a seeded permutation of ``positions`` (nested across sizes)."""
    if not 0 < num_examples <= len(positions):
        raise ConfigError(
            f"data.train_examples={num_examples} is not valid; it must be between 1 and the "
            f"training split's {len(positions)} examples"
        )
    return np.sort(positions[np.random.default_rng(seed).permutation(len(positions))[:num_examples]])


def head(split: Split, num_examples: int) -> Split:
    """The first ``num_examples`` of ``split`` (all of it if it is smaller)."""
    if num_examples >= len(split):
        return split
    if isinstance(split, InMemorySplit):
        return dataclasses.replace(
            split,
            images=split.images[:num_examples],
            labels=split.labels[:num_examples],
            source_indices=None if split.source_indices is None else split.source_indices[:num_examples],
        )
    if isinstance(split, EncodedSplit):
        return dataclasses.replace(split, source_indices=split.source_indices[:num_examples])
    raise TypeError(f"head() takes an InMemorySplit or an EncodedSplit, not {type(split).__name__}")


def build_splits(data: DataConfig) -> dict[str, Split]:
    """The run's three splits, by ``SplitName``, from the ``data`` config."""
    image_shape = tuple(data.image_shape)
    if data.name == "synthetic":
        return {
            role.value: synthetic_split(
                getattr(data.synthetic_examples, role.value),
                image_shape,
                data.num_classes,
                seed=index,
                augment=data.augment if role == SplitName.train else None,
            )
            for index, role in enumerate(SplitName)
        }
    if data.name == "folder":
        builder = open_folder(data.path, data.folder_holdout, data.data_dir)
    else:
        builder = open_builder(
            data.name, data_dir=data.data_dir, manual_dir=data.manual_dir, builder_module=data.builder_module
        )
    encoded = not data.in_memory
    splits: dict[str, Split] = {}
    for role, (role_source, positions) in _role_positions(data, builder).items():
        if encoded:
            splits[role] = EncodedSplit(role_source, positions, image_shape, data.augment, data.workers)
        else:
            images, labels = read_in_memory(role_source, positions, image_shape)
            splits[role] = InMemorySplit(images, labels, data.augment if role == SplitName.train else None, positions)
    return splits


def _role_positions(data: DataConfig, builder: Any) -> dict[str, tuple[Source, np.ndarray]]:
    """Each role's source and positions in it: the held-out validation and the
    training subset, when configured."""

    def source(split: str) -> Source:
        return open_source(builder, data.name, split, encoded_images=not data.in_memory)

    train_source = source(data.splits.train)
    train_positions = np.arange(len(train_source))
    roles: dict[str, tuple[Source, np.ndarray]] = {}
    if data.splits.validation is None:  # validate() asks for exactly one of the two
        train_positions, validation_positions = holdout(len(train_source), data.validation_holdout)
        roles[SplitName.validation.value] = (train_source, validation_positions)
    else:
        validation_source = source(data.splits.validation)
        roles[SplitName.validation.value] = (validation_source, np.arange(len(validation_source)))
    if data.train_examples is not None:
        train_positions = subset(train_positions, data.train_examples, data.subset_seed)
    roles[SplitName.train.value] = (train_source, train_positions)
    test_source = source(data.splits.test)
    roles[SplitName.test.value] = (test_source, np.arange(len(test_source)))
    return roles
