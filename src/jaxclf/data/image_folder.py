"""A user's own images as a TFDS dataset: ``data=folder data.path=DIR``.

The layout is torchvision's ``ImageFolder`` (and TFDS's): one sub-folder per
class, named after it, holding PNG or JPEG files of any size, grey or colour::

    DIR/cat/001.png  DIR/dog/002.jpg  ...                  (one tree: split here)
    DIR/train/cat/...  DIR/validation/cat/...  DIR/test/cat/...   (split by you)

With one tree, a seeded ``data.folder_holdout`` fraction of each class goes to
validation and the same to test. The dataset is prepared once into
``data.data_dir`` (the images' own encoded bytes, array_record) under a name
that depends on the folder's path, and read like ``imagenet2012``: decoded
per batch, resized or Inception-cropped to ``data.image_shape``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Iterator
from typing import ClassVar

import tensorflow_datasets as tfds

from jaxclf.data.folder_layout import class_names, labelled_files

logger = logging.getLogger(__name__)


class FolderConfig(tfds.core.BuilderConfig):
    """One folder: its dataset's name joins the folder's name and a hash of its path and holdout."""

    def __init__(self, *, path: str, holdout: float):
        path = os.path.abspath(path)
        digest = hashlib.sha256(f"{path}\n{holdout}".encode()).hexdigest()[:12]
        slug = re.sub(r"[^a-z0-9]+", "_", os.path.basename(path).lower()).strip("_") or "folder"
        super().__init__(name=f"{slug}_{digest}", version=tfds.core.Version("1.0.0"), description=path)
        self.path, self.holdout = path, holdout


class ImageFolder(tfds.core.GeneratorBasedBuilder, skip_registration=True):  # type: ignore[call-arg]
    """A folder of images, one sub-folder per class."""

    name = "image_folder"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "The images' own bytes, one class per sub-folder."}

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        return self.dataset_info_from_configs(
            description=f"Images from {config.path}",
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),  # decoded to data.image_shape per batch
                    "label": tfds.features.ClassLabel(names=class_names(config.path)),
                }
            ),
            supervised_keys=("image", "label"),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        del dl_manager  # the images are local
        config = self.builder_config
        return {
            split: self._generate_examples(files)
            for split, files in labelled_files(config.path, config.holdout).items()
            if files
        }

    def _generate_examples(self, files: list[tuple[str, int]]) -> Iterator[tuple[int, dict]]:
        for index, (file, label) in enumerate(files):
            with open(file, "rb") as image:
                yield index, {"image": image.read(), "label": label}  # its own bytes: never re-encoded


def builder(path: str, holdout: float, data_dir: str | None) -> ImageFolder:
    """The (maybe not yet prepared) dataset of the folder at ``path``."""
    return ImageFolder(config=FolderConfig(path=path, holdout=holdout), data_dir=data_dir, file_format="array_record")
