"""``mode=predict``: a trained run's predicted distribution for new images or a split, as CSV.

``predict.inputs`` names image files, folders of them, or a split of the
run's dataset (``test``, ``validation``, ``train``). Images are taken as the
dataset stores them (same height, width, channels and pixel range: the 8x8
digits hold 0..16); what is not a regular file, cannot be read or has another
shape is named in one warning and left out (``jaxclf.data.image_files``).
The rest are predicted in batches on the run's mesh.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxclf.config.choices import SplitName
from jaxclf.data.image_files import read_image, regular_files
from jaxclf.data.loader import eval_batches
from jaxclf.data.splits import InMemorySplit, Split
from jaxclf.errors import ConfigError
from jaxclf.hardware import Hardware
from jaxclf.run_dir import replaced_atomically
from jaxclf.train_state import Classifier, TrainState

logger = logging.getLogger(__name__)

PREDICTIONS_FILE = "predictions.csv"
NO_LABEL = -1


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What to predict: a name per example (its path, or ``<split>/<index>``) and the examples."""

    names: list[str]
    split: Split


def input_values(inputs: Any) -> list[str]:
    """``predict.inputs`` as a list of strings."""
    values = [inputs] if isinstance(inputs, str) else list(inputs or [])
    if not values:
        raise ConfigError("predict.inputs is empty; give image files, folders or a split name (e.g. test)")
    return [str(value) for value in values]


def is_split_name(value: str) -> bool:
    return value in {name.value for name in SplitName} and not os.path.exists(value)


def image_paths(values: Sequence[str]) -> list[str]:
    """The regular files named in ``values`` (not split names), folders
    expanded in name order; a warning names each other path, left out."""
    paths = []
    for value in values:
        if os.path.isdir(value):
            paths += sorted(os.path.join(value, name) for name in os.listdir(value) if not name.startswith("."))
        elif not is_split_name(value):
            paths.append(value)
    return regular_files(paths, "predict.inputs")


def read_images(paths: Sequence[str], image_shape: Sequence[int]) -> Inputs:
    """The images at ``paths`` that read as ``image_shape`` (``[H, W, C]``), unlabelled; a warning for each other."""
    names, images = [], []
    for path in paths:
        image = read_image(path, image_shape, "predict.inputs")
        if image is not None:
            names.append(path)
            images.append(image)
    stacked = np.stack(images) if images else np.zeros((0, *image_shape), np.uint8)
    return Inputs(names, InMemorySplit(stacked, np.full(len(names), NO_LABEL, np.int32)))


def split_inputs(name: str, split: Split) -> Inputs:
    return Inputs([f"{name}/{index}" for index in range(len(split))], split)


class Predictor:
    """A classifier's predictions on ``hardware``'s mesh in padded batches of
    ``batch_size``, from one jitted step (compiled once per batch shape)."""

    def __init__(self, classifier: Classifier, hardware: Hardware, batch_size: int):
        self.hardware, self.batch_size = hardware, batch_size
        self._step = jax.jit(classifier.predict_step)

    def __call__(self, state: TrainState, split: Split) -> tuple[np.ndarray, np.ndarray]:
        """The predicted distribution's log-probabilities (``[N, classes]``)
        and the label of every example of ``split``, in every process."""
        log_probs, labels = [], []
        for batch in eval_batches(split, self.batch_size, self.hardware):
            outputs = (self._step(state, batch["image"]), batch["label"])
            if jax.process_count() > 1:
                outputs = multihost_utils.process_allgather(outputs, tiled=True)
            log_probs.append(np.asarray(outputs[0]))
            labels.append(np.asarray(outputs[1]))
        if not log_probs:
            return np.zeros((0, 0), np.float32), np.zeros(0, np.int32)
        return np.concatenate(log_probs)[: len(split)], np.concatenate(labels)[: len(split)]


def write_predictions(path: str, names: Sequence[str], labels: np.ndarray, probs: np.ndarray, top_k: int) -> None:
    """``predictions.csv``: input, label (empty when unknown), predicted class and
    its probability, then the ``top_k`` classes with their probabilities (``probs``)."""
    k = min(top_k, probs.shape[-1])
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    header = ["input", "label", "predicted", "probability"]
    for rank in range(1, k + 1):
        header += [f"top{rank}", f"top{rank}_probability"]
    with replaced_atomically(path, newline="") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        for name, label, row, classes in zip(names, labels, probs, order, strict=True):
            ranked = [value for cls in classes for value in (int(cls), f"{row[cls]:.6f}")]
            known = "" if label == NO_LABEL else int(label)
            writer.writerow([name, known, int(classes[0]), f"{row[classes[0]]:.6f}", *ranked])
