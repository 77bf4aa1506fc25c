"""Where a folder of images keeps its classes and splits, and which of its
files are images (no TFDS: the config reads the class count from it before
anything heavy is imported). A file that does not decode is named in one
warning and left out."""

from __future__ import annotations

import logging
import os

import numpy as np
from PIL import Image

from jaxclf.data.image_files import regular_files
from jaxclf.errors import ConfigError

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SUFFIXES = (".png", ".jpg", ".jpeg")
SPLIT_SEED = 0


def class_names(path: str) -> list[str]:
    """The class folders of ``path`` (of ``path/train`` where the splits are given), sorted."""
    root = os.path.join(path, "train") if _has_split_trees(path) else path
    if not os.path.isdir(root):
        raise ConfigError(f"data.path={path} is not a folder; give a folder with one sub-folder of images per class")
    names = sorted(name for name in os.listdir(root) if os.path.isdir(os.path.join(root, name)))
    if len(names) < 2:
        raise ConfigError(
            f"data.path={path} has {len(names)} class folder(s) in {root}; give one sub-folder of images per class "
            "(at least two)"
        )
    return names


def _has_split_trees(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "train"))


def labelled_files(path: str, holdout: float) -> dict[str, list[tuple[str, int]]]:
    """Each split's ``(file, label)`` pairs: the given split trees, or the one
    tree with a seeded ``holdout`` fraction of each class for validation and
    for test."""
    names = class_names(path)
    if _has_split_trees(path):
        return {split: _files(os.path.join(path, split), names) for split in SPLITS}
    splits: dict[str, list[tuple[str, int]]] = {split: [] for split in SPLITS}
    rng = np.random.default_rng(SPLIT_SEED)
    for label, name in enumerate(names):
        files = _files(os.path.join(path, name), [name], label)
        order = rng.permutation(len(files))
        held_out = round(holdout * len(files))
        for split, part in zip(
            SPLITS, np.split(order, [len(files) - 2 * held_out, len(files) - held_out]), strict=True
        ):
            splits[split] += [files[index] for index in sorted(part)]
    return splits


def _files(root: str, names: list[str], label: int | None = None) -> list[tuple[str, int]]:
    """The image files under ``root`` (``root/<class>/*``, or ``root/*`` for one class ``label``)."""
    if label is not None:
        folders = [(root, label)]
    else:
        folders = [(os.path.join(root, name), index) for index, name in enumerate(names)]
    pairs = []
    for folder, folder_label in folders:
        if not os.path.isdir(folder):
            continue
        candidates = sorted(
            os.path.join(folder, name) for name in os.listdir(folder) if name.lower().endswith(SUFFIXES)
        )
        pairs += [(file, folder_label) for file in regular_files(candidates, "data.path") if _decodes(file)]
    return pairs


def _decodes(file: str) -> bool:
    """Whether the file decodes as a PNG or JPEG image; a warning names it where not."""
    try:
        with Image.open(file) as image:
            if image.format not in ("PNG", "JPEG"):
                raise ValueError(f"it holds a {image.format} image")
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        logger.warning("data.path: %s does not decode as a PNG or JPEG image (%s); left out", file, error)
        return False
    return True
