"""The ``data`` config: which dataset, its splits, its shape and statistics, and how it is read."""

from __future__ import annotations

import dataclasses
import enum
from typing import Optional

from omegaconf import II, MISSING

from jaxclf.config.resumable import resumable
from jaxclf.data.augment import Augmenter


class SplitName(str, enum.Enum):
    """The one vocabulary of split names: data roles, evaluation and summary keys."""

    train = "train"
    validation = "validation"
    test = "test"


@dataclasses.dataclass
class SplitsConfig:
    """TFDS split names (or split expressions) for each role."""

    train: str = "train"
    validation: Optional[str] = "validation"  # None: hold out data.validation_holdout examples of train
    test: str = "test"


@dataclasses.dataclass
class SyntheticExamplesConfig:
    train: int = 1024
    validation: int = 128
    test: int = 128


@dataclasses.dataclass
class DataConfig:
    name: str = MISSING  # TFDS dataset name, "synthetic" (random images and labels) or "folder" (data.path)
    # data=folder: a folder of images, one sub-folder per class (jaxclf.data.image_folder), and the
    # fraction of each class held out for validation and for test when it has no train/ validation/ test/.
    path: Optional[str] = None
    folder_holdout: float = 0.1
    # Module to import so that a builder outside the TFDS catalog registers.
    builder_module: Optional[str] = None
    data_dir: Optional[str] = resumable(None)  # None: TFDS's default (~/tensorflow_datasets)
    manual_dir: Optional[str] = resumable(None)  # downloaded archives, for datasets TFDS cannot fetch (ImageNet)
    num_classes: int = MISSING
    image_shape: list[int] = MISSING  # [height, width, channels]
    # Per-channel normalisation applied to raw pixel values: (x - mean) / std.
    mean: list[float] = MISSING
    std: list[float] = MISSING
    batch_size: int = 128  # global batch size, over all devices and hosts
    eval_batch_size: Optional[int] = resumable(None)  # None: same as batch_size
    splits: SplitsConfig = dataclasses.field(default_factory=SplitsConfig)
    validation_holdout: int = 0  # examples of train held out as validation (fixed seed), with splits.validation=null
    train_examples: Optional[int] = None  # train on a seeded subset of this many examples
    subset_seed: int = II("seed")
    # True: decode the splits once into host memory. False: keep images encoded, decode per batch.
    in_memory: bool = True
    augment: Augmenter = dataclasses.field(default_factory=Augmenter)  # training only
    prefetch: int = resumable(2)  # training batches prepared ahead, in units of one jitted call
    workers: int = resumable(4)  # host threads reading, decoding and augmenting batches
    synthetic_examples: SyntheticExamplesConfig = dataclasses.field(default_factory=SyntheticExamplesConfig)
