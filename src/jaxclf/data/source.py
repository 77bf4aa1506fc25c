"""TFDS split -> normalised in-memory arrays.

Reading goes through ``tfds.data_source`` (array_record, random access), which
needs no TensorFlow; a dataset outside the catalog registers itself when its
``builder_module`` is imported, and is prepared on first use.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Optional

import numpy as np

from jaxclf.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ArraySplit:
    """One split, fully in memory: normalised float32 images and int32 labels."""

    images: np.ndarray  # [N, H, W, C]
    labels: np.ndarray  # [N]

    def __len__(self) -> int:
        return len(self.labels)


def load_split(
    name: str,
    split: str,
    *,
    mean: list[float],
    std: list[float],
    data_dir: Optional[str] = None,
    builder_module: Optional[str] = None,
) -> ArraySplit:
    """Reads a whole TFDS split into memory and normalises it: ``(x - mean) / std``."""
    import tensorflow_datasets as tfds

    if builder_module is not None:
        importlib.import_module(builder_module)  # registers the builder with TFDS
    try:
        builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    except tfds.core.registered.DatasetNotFoundError:
        raise ConfigError(f"data.name={name!r} is not a TFDS dataset (see tfds.list_builders())") from None
    if not builder.is_prepared():
        builder.download_and_prepare(file_format="array_record")
    try:
        source = builder.as_data_source(split=split)
    except (KeyError, ValueError) as error:
        available = ", ".join(builder.info.splits)
        raise ConfigError(f"split {split!r} of {name} is not valid ({error}); splits: {available}") from None
    examples = source.__getitems__(range(len(source)))
    images = np.stack([example["image"] for example in examples]).astype(np.float32)
    labels = np.asarray([example["label"] for example in examples], dtype=np.int32)
    images = (images - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return ArraySplit(images=images, labels=labels)
