"""Input pipeline on real data: does the loader keep the step fed, and how fast is it per core?

Each input is read as a run reads it:

* a dataset held in memory (``mnist``, ``fashion_mnist``, ``mnist_5k``: any
  ``data=`` name), with its config's augmentation (MNIST: 2-pixel random
  shifts; Fashion-MNIST: shifts and flips), the CNN;
* ``jpeg_folder``: a ``data=folder`` of real-sized JPEGs (``--jpeg-source``'s
  training images upscaled to 500x375 colour JPEGs, quality 90), decoded per
  batch with an Inception crop to 224x224 and a flip (as ``data=imagenet2012``),
  ViT-Ti/16.

Three loaders over the same images with the same augmentation: jaxclf's
(``TrainLoader``), ``tf.data`` and ``grain``, each written as its users write
it. ``tf.data``: a shuffle buffer, a per-example ``map`` of ``tf.image`` ops,
``batch``, ``prefetch``; for JPEGs, big_vision's ``decode_and_crop_jpeg``
(only the crop is decoded), from the same images prepared as TFRecords (TFDS
cannot read array_record into ``tf.data``). ``grain``: ``MapDataset`` over
the array_record source, ``shuffle``, a per-example ``random_map`` (for JPEGs
jaxclf's own decode and crop), ``batch``, threads from ``ReadOptions``.

Two measures, every repeat printed, alternating within one run:

1. The real training step (``Classifier.train_steps``, one step per call) fed
   by each loader with one thread per core, and fed one device-resident batch
   (no input work). fed / resident is the share of the step's speed a loader
   keeps, its threads sharing the step's cores.
2. Each loader alone, with 1 thread (its images/s per core) and with one
   thread per core; and the cores it would need to keep one accelerator fed
   at ``--accelerator-rate`` images/s (ViT-B/16: about 3,000 on one GPU).

    python bench/input.py [--repeats 3] [--cases mnist fashion_mnist jpeg_folder]

Needs ``jaxclf-data fetch mnist`` and ``fashion_mnist`` first, and grain
(``pip install -e ".[bench]"``).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grain
import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from omegaconf import OmegaConf
from PIL import Image

import jaxclf.config.schema  # noqa: F401  (registers the schema)
import record  # bench/ is on sys.path when this script runs
from jaxclf import hardware as hardware_lib
from jaxclf.config.schema import DataConfig
from jaxclf.console import quiet_libraries
from jaxclf.data import image_folder
from jaxclf.data.augment import Augmenter
from jaxclf.data.loader import TrainLoader
from jaxclf.data.splits import EncodedSplit, InMemorySplit, Split, build_splits
from jaxclf.hardware import Hardware
from workload import TrainingStep, composed  # bench/ is on sys.path when this script runs

JPEG_SIZE = (500, 375)  # ImageNet's most common size (width, height)
CROP = (224, 224)
JPEG_FOLDER = "jpeg_folder"
LOADERS = ("jaxclf", "tf.data", "grain")
Feed = Callable[[int], dict]  # step -> a device batch [1, B, ...]


@dataclass(frozen=True)
class Case:
    name: str
    overrides: tuple[str, ...]  # the model and the data, as on the command line
    batch_size: int
    steps: int  # timed steps per measurement of the training step
    loader_images: int  # images per measurement of a loader alone


def case(name: str, folder: Path, data_dir: str | None, scale: float) -> Case:
    if name == JPEG_FOLDER:
        jpeg = ("data=folder", f"data.path={folder}", f"data.data_dir={folder}.tfds")
        augment = ("data.augment.inception_crop=true", "data.augment.horizontal_flip=true")
        return Case(name, ("model=vit_ti16", *jpeg, *augment), 16, max(1, round(4 * scale)), round(512 * scale))
    fetched = (f"data.data_dir={data_dir}",) if data_dir else ()
    return Case(name, ("model=cnn", f"data={name}", *fetched), 128, max(1, round(10 * scale)), round(20_480 * scale))


def split_of(overrides: tuple[str, ...]) -> Split:
    """The training split a run with ``overrides`` reads."""
    return build_splits(OmegaConf.to_object(composed(list(overrides)).data))["train"]


def write_jpeg_folder(folder: Path, source: Case, per_class: int) -> None:
    """``per_class`` training images of each class of ``source``, upscaled to JPEG_SIZE: folder/<class>/<n>.jpg."""
    if folder.is_dir():
        return
    train = split_of(source.overrides)
    assert isinstance(train, InMemorySplit)
    for label in range(int(train.labels.max()) + 1):
        (folder / f"class_{label}").mkdir(parents=True)
        for number, index in enumerate(np.flatnonzero(train.labels == label)[:per_class]):
            grey = Image.fromarray(train.images[index, :, :, 0])
            grey.convert("RGB").resize(JPEG_SIZE, Image.Resampling.BICUBIC).save(
                folder / f"class_{label}" / f"{number}.jpg", quality=90
            )


# --- tf.data -----------------------------------------------------------------------------------


def tf_in_memory(split: InMemorySplit, batch_size: int, threads: int) -> tf.data.Dataset:
    """Per-example pad-and-shift (and flip) of the decoded images, as ``split.augment`` configures."""
    augment = split.augment
    assert augment is not None
    padding = augment.crop_padding

    def augmented(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if padding:
            padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
            image = tf.image.random_crop(padded, tf.shape(image))
        if augment.horizontal_flip:
            image = tf.image.random_flip_left_right(image)
        return image, label

    dataset = tf.data.Dataset.from_tensor_slices((split.images, split.labels)).repeat().shuffle(10_000, seed=0)
    return tf_finished(dataset.map(augmented, num_parallel_calls=threads), batch_size, threads)


def tf_jpegs(folder: Path, batch_size: int, threads: int) -> tf.data.Dataset:
    """The folder's JPEGs as TFRecords; an Inception crop that decodes only the crop, resized, flipped."""
    config = image_folder.FolderConfig(path=str(folder), holdout=DataConfig.folder_holdout)  # as data=folder
    builder = image_folder.ImageFolder(config=config, data_dir=f"{folder}.tfrecord", file_format="tfrecord")
    if not builder.is_prepared():
        builder.download_and_prepare()

    def augmented(example: dict) -> tuple[tf.Tensor, tf.Tensor]:
        begin, size, _ = tf.image.sample_distorted_bounding_box(
            tf.image.extract_jpeg_shape(example["image"]),
            tf.zeros([0, 0, 4]),
            area_range=(0.08, 1.0),
            aspect_ratio_range=(3 / 4, 4 / 3),
            max_attempts=10,
            use_image_if_no_bounding_boxes=True,
        )
        window = tf.stack([begin[0], begin[1], size[0], size[1]])
        image = tf.image.decode_and_crop_jpeg(example["image"], window, channels=3)
        image = tf.cast(tf.clip_by_value(tf.round(tf.image.resize(image, CROP)), 0, 255), tf.uint8)
        return tf.image.random_flip_left_right(image), example["label"]

    dataset = builder.as_dataset(split="train", decoders={"image": tfds.decode.SkipDecoding()})
    dataset = dataset.repeat().shuffle(1_000, seed=0)
    return tf_finished(dataset.map(augmented, num_parallel_calls=threads), batch_size, threads)


def tf_finished(dataset: tf.data.Dataset, batch_size: int, threads: int) -> tf.data.Dataset:
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    options.threading.max_intra_op_parallelism = 1
    return dataset.batch(batch_size, drop_remainder=True).prefetch(2).with_options(options)


# --- grain -------------------------------------------------------------------------------------


def grain_dataset(split: Split, batch_size: int, threads: int) -> grain.IterDataset:
    """The split's examples, shuffled, augmented one by one as ``split`` augments them, batched."""
    dataset = grain.MapDataset.source(np.arange(len(split))).shuffle(seed=0).repeat()
    if isinstance(split, EncodedSplit):
        source, positions = split.source, split.source_indices

        def augmented(index: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
            record = source[int(positions[index])]
            return split.augment.encoded(record["image"], rng, CROP, 3), int(record["label"])

    else:
        assert isinstance(split, InMemorySplit) and split.augment is not None
        images, labels, augment = split.images, split.labels, split.augment

        def augmented(index: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
            return shifted_and_flipped(images[index], augment, rng), int(labels[index])

    dataset = dataset.random_map(augmented, seed=0).batch(batch_size, drop_remainder=True)
    return dataset.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=2))


def shifted_and_flipped(image: np.ndarray, augment: Augmenter, rng: np.random.Generator) -> np.ndarray:
    """One image padded and shifted by up to ``crop_padding`` pixels, maybe mirrored (``Augmenter.batch``'s work)."""
    padding = augment.crop_padding
    height, width = image.shape[:2]
    if padding:
        padded = np.pad(image, ((padding, padding), (padding, padding), (0, 0)))
        top, left = rng.integers(0, 2 * padding + 1, size=2)
        image = padded[top : top + height, left : left + width]
    if augment.horizontal_flip and rng.random() < 0.5:
        image = image[:, ::-1]
    return np.ascontiguousarray(image)


# --- measures ----------------------------------------------------------------------------------


def feed_of(batches: Iterator[tuple[np.ndarray, np.ndarray]]) -> Feed:
    """Device batches ``[1, B, ...]`` from an iterator of host ``(images, labels)``."""

    def next_batches(_: int) -> dict:
        images, labels = next(batches)
        return {"image": jax.device_put(np.asarray(images)[None]), "label": jax.device_put(np.asarray(labels)[None])}

    return next_batches


class Loaders:
    """jaxclf's loader, tf.data and grain over one case's training images, ``threads`` threads each."""

    def __init__(self, case: Case, hardware: Hardware, folder: Path, threads: int):
        split = split_of((*case.overrides, f"data.workers={threads}"))
        self.loader = TrainLoader(split, case.batch_size, 0, hardware, prefetch=2, workers=threads)
        steps = itertools.count()  # each measure goes on where the last stopped, as the others' iterators do
        if isinstance(split, InMemorySplit):
            dataset = tf_in_memory(split, case.batch_size, threads)
        else:
            dataset = tf_jpegs(folder, case.batch_size, threads)
        self.feeds: dict[str, Feed] = {
            "jaxclf": lambda _: self.loader.batches(next(steps), 1),
            "tf.data": feed_of(dataset.as_numpy_iterator()),
            "grain": feed_of(iter(grain_dataset(split, case.batch_size, threads))),
        }

    def close(self) -> None:
        self.loader.close()


def images_per_sec(feed: Feed, batch_size: int, steps: int, step: TrainingStep | None = None) -> float:
    """Images/s of ``steps`` batches of ``feed`` (trained on by ``step``, if given), after one untimed."""

    def one(index: int) -> None:
        batches = feed(index)
        if step is not None:
            step(batches)
        jax.block_until_ready(step.state if step is not None else batches)

    one(0)
    start = time.perf_counter()
    for index in range(1, steps + 1):
        one(index)
    return steps * batch_size / (time.perf_counter() - start)


def alternating(feeds: dict[str, Feed], repeats: int, measure: Callable[[Feed], float]) -> dict[str, list[float]]:
    """``repeats`` measures of each feed, in order then in reverse order, alternately."""
    rates: dict[str, list[float]] = {name: [] for name in feeds}
    for repeat in range(repeats):
        for name in list(feeds) if repeat % 2 == 0 else list(reversed(feeds)):
            rates[name].append(measure(feeds[name]))
    return rates


def every(rates: list[float]) -> str:
    return f"{statistics.median(rates):>8.0f} ({', '.join(f'{rate:.0f}' for rate in rates)})"


def fed_step(case: Case, loaders: Loaders, repeats: int) -> dict[str, list[float]]:
    """The training step's images/s fed by each loader and by one device-resident batch."""
    resident = loaders.loader.batches(0, 1)
    step = TrainingStep(composed(list(case.overrides)))
    return alternating(
        {**loaders.feeds, "resident": lambda _: resident},
        repeats,
        lambda feed: images_per_sec(feed, case.batch_size, case.steps, step),
    )


def report(case: Case, hardware: Hardware, folder: Path, args: argparse.Namespace) -> None:
    cores = os.cpu_count() or 1
    batches = max(1, case.loader_images // case.batch_size)
    alone: dict[int, dict[str, list[float]]] = {}
    for threads in (cores, 1):
        loaders = Loaders(case, hardware, folder, threads)
        alone[threads] = alternating(
            loaders.feeds, args.repeats, lambda feed: images_per_sec(feed, case.batch_size, batches)
        )
        if threads == cores:
            fed = fed_step(case, loaders, args.repeats)
        loaders.close()

    model = next(override for override in case.overrides if override.startswith("model="))
    print(f"\n{case.name}: {model}, batch {case.batch_size}; images/s, median (every repeat)")
    header = f"{'step fed by it':>30}{'fed/resident':>14}{'alone, 1 thread':>30}{f'alone, {cores} threads':>30}"
    print(f"  {'loader':<10}{header}   cores for {args.accelerator_rate} img/s")
    for name in (*LOADERS, "resident"):
        share = statistics.median(fed[name]) / statistics.median(fed["resident"])
        row = f"  {name:<10}{every(fed[name]):>30}{share:>14.2f}"
        if name in LOADERS:
            need = args.accelerator_rate / statistics.median(alone[1][name])
            row += f"{every(alone[1][name]):>30}{every(alone[cores][name]):>30}   {need:.1f}"
        print(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="alternating measurements of each feed")
    parser.add_argument("--cases", nargs="+", default=["mnist", "fashion_mnist", JPEG_FOLDER])
    parser.add_argument("--data-dir", default=None, help="TFDS data dir holding the fetched datasets")
    parser.add_argument("--work-dir", default=None, help="where the JPEG folder is written (default: a temporary one)")
    parser.add_argument("--jpeg-source", default="fashion_mnist", help="the dataset whose images fill the JPEG folder")
    parser.add_argument("--jpegs-per-class", type=int, default=100, help="images of each class in the JPEG folder")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiplies every measurement's length")
    parser.add_argument("--accelerator-rate", type=int, default=3000, help="images/s one accelerator trains")
    args = parser.parse_args()

    quiet_libraries()
    tfds.disable_progress_bar()
    tf.config.set_visible_devices([], "GPU")
    hardware = hardware_lib.setup(hardware_lib.HardwareConfig())
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.work_dir or scratch) / f"{args.jpeg_source}_jpegs_{args.jpegs_per_class}"
        if JPEG_FOLDER in args.cases:
            write_jpeg_folder(folder, case(args.jpeg_source, folder, args.data_dir, 1), args.jpegs_per_class)
        print(f"{os.cpu_count()} cores; one step per call; {args.repeats} alternating repeats")
        for name in args.cases:
            report(case(name, folder, args.data_dir, args.steps_scale), hardware, folder, args)


if __name__ == "__main__":
    record.run(main)
