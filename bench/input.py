"""Input pipeline: does the loader keep the training step fed?

For each input shape, the real training step of a model sized for it runs
twice in this one process, the two alternating over ``--repeats``: fed by
``TrainLoader.batches`` (indices, gather or decode, augmentation, device
arrays, prefetch threads, all sharing the machine with the step), and fed
one device-resident batch (no input work at all). Their ratio is the share
of the step's speed the input pipeline keeps: 1.00 means the loader costs
nothing. The step is ``Classifier.train_steps`` (normalisation on device,
the metrics merged), one step per call.

* ``digits``: the embedded dataset as ``python launch.py`` reads it, the MLP;
* ``cifar``: CIFAR-shaped synthetic data (50,000 32x32x3 uint8 images in
  memory) with pad-4 crop and flip, ResNet-18 (CIFAR stem);
* ``imagenet``: JPEG-encoded 224x224 images decoded per batch with an
  Inception crop and flip (as ``data=imagenet2012``), ViT-Ti/16.

    python bench/input.py [--repeats 3] [--workers 4] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from dataclasses import dataclass

import jax
import numpy as np
from omegaconf import OmegaConf
from PIL import Image

import jaxclf.config  # noqa: F401  (registers the schema)
from jaxclf import hardware as hardware_lib
from jaxclf.data.augment import Augmenter
from jaxclf.data.loader import TrainLoader
from jaxclf.data.splits import EncodedSplit, InMemorySplit, Split, build_splits
from jaxclf.hardware import Hardware
from workload import TrainingStep, composed  # bench/ is on sys.path when this script runs


@dataclass(frozen=True)
class Case:
    name: str
    overrides: tuple[str, ...]  # the model and the data shape
    batch_size: int
    steps: int  # timed steps per measurement


CASES = (
    Case("digits", ("model=mlp",), 128, 2000),
    Case("cifar", ("model=resnet18", "model.stem=cifar", "data=synthetic", "data.image_shape=[32,32,3]"), 32, 2),
    Case("imagenet", ("model=vit_ti16", "data=synthetic", "data.num_classes=1000"), 16, 4),
)


def digits_split(data_dir: str | None) -> InMemorySplit:
    cfg = composed([f"data.data_dir={data_dir}"] if data_dir else [])
    return build_splits(OmegaConf.to_object(cfg.data))["train"]


def cifar_split() -> InMemorySplit:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50_000, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=50_000, dtype=np.int32)
    return InMemorySplit(images, labels, Augmenter(crop_padding=4, horizontal_flip=True))


def imagenet_split(num_images: int, workers: int) -> EncodedSplit:
    """JPEGs of smooth random images (JPEG-compressible, like photographs), 224x224, quality 90."""
    rng = np.random.default_rng(0)
    records = []
    for index in range(num_images):
        coarse = rng.integers(0, 256, size=(14, 14, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((224, 224), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        records.append({"image": buffer.getvalue(), "label": index % 1000})
    augment = Augmenter(inception_crop=True, horizontal_flip=True)
    return EncodedSplit(records, np.arange(num_images), (224, 224, 3), augment, workers)


def loader_images_per_sec(loader: TrainLoader, calls: int, steps_per_call: int) -> float:
    """The loader alone: images/s of ``batches`` over ``calls`` calls (after one untimed)."""
    jax.block_until_ready(loader.batches(0, steps_per_call))  # warm-up: first call, threads started
    start = time.perf_counter()
    for call in range(1, calls + 1):
        jax.block_until_ready(loader.batches(call * steps_per_call, steps_per_call))
    return calls * steps_per_call * loader.batch_size / (time.perf_counter() - start)


def images_per_sec(step: TrainingStep, next_batches, batch_size: int, steps: int) -> float:
    """Training images/s over ``steps`` steps after one untimed (compilation, the loader's threads)."""
    step(next_batches(0))
    jax.block_until_ready(step.state)
    start = time.perf_counter()
    for index in range(1, steps + 1):
        step(next_batches(index))
    jax.block_until_ready(step.state)
    return steps * batch_size / (time.perf_counter() - start)


def measure(case: Case, split: Split, hardware: Hardware, workers: int, repeats: int) -> dict[str, list[float]]:
    step = TrainingStep(composed([*case.overrides, f"data.batch_size={case.batch_size}"]))
    loader = TrainLoader(split, case.batch_size, 0, hardware, prefetch=2, workers=workers)
    resident = loader.batches(0, 1)
    feeds = {"fed by the loader": lambda index: loader.batches(index, 1), "device-resident": lambda _: resident}
    rates: dict[str, list[float]] = {name: [] for name in feeds}
    for feed in feeds.values():  # untimed: compilation, the loader's threads, first allocations
        images_per_sec(step, feed, case.batch_size, 1)
    for repeat in range(repeats):
        for name in feeds if repeat % 2 == 0 else reversed(list(feeds)):
            rates[name].append(images_per_sec(step, feeds[name], case.batch_size, case.steps))
    rates["loader alone"] = [loader_images_per_sec(loader, case.steps, 1)]
    loader.close()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="alternating measurements of each feed")
    parser.add_argument("--workers", type=int, default=4, help="host threads (data.workers)")
    parser.add_argument("--imagenet-images", type=int, default=256, help="distinct JPEGs generated")
    parser.add_argument("--cases", nargs="+", default=[case.name for case in CASES], help="a subset of the cases")
    parser.add_argument("--steps-scale", type=float, default=1.0, help="multiplies each case's timed steps")
    parser.add_argument("--data-dir", default=None, help="TFDS data dir holding (or receiving) the digits")
    args = parser.parse_args()

    hardware = hardware_lib.setup(hardware_lib.HardwareConfig())
    splits = {
        "digits": lambda: digits_split(args.data_dir),
        "cifar": cifar_split,
        "imagenet": lambda: imagenet_split(args.imagenet_images, args.workers),
    }
    print(f"{args.workers} loader threads; one step per call; {args.repeats} alternating repeats; medians")
    print(f"{'input':<10}{'model':<36}{'batch':>6}{'fed img/s':>11}{'resident img/s':>16}{'fed / resident':>16}")
    for case in CASES:
        if case.name not in args.cases:
            continue
        case = Case(case.name, case.overrides, case.batch_size, max(1, round(case.steps * args.steps_scale)))
        rates = measure(case, splits[case.name](), hardware, args.workers, args.repeats)
        fed, resident = rates["fed by the loader"], rates["device-resident"]
        ratios = ", ".join(f"{f / r:.2f}" for f, r in zip(fed, resident, strict=True))
        model = " ".join(override for override in case.overrides if override.startswith("model"))
        print(
            f"{case.name:<10}{model:<36}{case.batch_size:>6}{statistics.median(fed):>11.0f}"
            f"{statistics.median(resident):>16.0f}{statistics.median(fed) / statistics.median(resident):>16.2f}"
            f"   (each: {ratios}; the loader alone: {rates['loader alone'][0]:.0f} img/s)"
        )


if __name__ == "__main__":
    main()
