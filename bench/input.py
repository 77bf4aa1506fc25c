"""Input pipeline throughput: images/s the loader delivers against images/s the
default training step consumes, on this machine, in one run.

Three inputs:

* ``digits``: the embedded dataset as ``python launch.py`` reads it (in memory);
* ``cifar``: CIFAR-shaped synthetic data (50,000 32x32x3 uint8 images in
  memory) with pad-4 crop and flip;
* ``imagenet``: ImageNet-shaped synthetic data: JPEG-encoded 224x224 images
  decoded per batch with an Inception crop and flip, as ``data=imagenet2012``.

The loader figure is ``TrainLoader.batches`` end to end (indices, gather or
decode, augment, global device arrays, prefetch threads), timed
over whole jitted-call chunks. The demand is the default model's (the MLP)
fused ``train_steps`` on uint8 batches already on device (normalised on
device, as the Trainer does), at the same input shape.

    python bench/input.py [--calls 30] [--steps-per-call 10] [--workers 4]
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

import jax
import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

import jaxclf.config  # noqa: F401  (registers the schema)
from jaxclf import hardware as hardware_lib
from jaxclf.data.augment import Augmenter
from jaxclf.data.loader import Normalizer, TrainLoader
from jaxclf.data.splits import EncodedSplit, InMemorySplit, build_splits
from jaxclf.metrics import TrainMetrics
from jaxclf.train_state import create_train_state, train_steps

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def digits_split(data_dir: str | None) -> InMemorySplit:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"data.data_dir={data_dir}"] if data_dir else [])
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
    jax.block_until_ready(loader.batches(0, steps_per_call))  # warm-up: first call, threads started
    start = time.perf_counter()
    for call in range(1, calls + 1):
        jax.block_until_ready(loader.batches(call * steps_per_call, steps_per_call))
    return calls * steps_per_call * loader.batch_size / (time.perf_counter() - start)


def demand_images_per_sec(image_shape: tuple[int, ...], batch_size: int, steps_per_call: int, calls: int) -> float:
    """The default model's fused training steps on device-resident uint8 batches,
    normalised on device as the Trainer does."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config")
    model, tx, objective = instantiate(cfg.model), instantiate(cfg.optim), instantiate(cfg.loss)
    state = create_train_state(model, tx, image_shape, jax.random.key(0))
    rng = np.random.default_rng(0)
    batches = {
        "image": jax.device_put(rng.integers(0, 256, size=(steps_per_call, batch_size, *image_shape), dtype=np.uint8)),
        "label": jax.device_put(rng.integers(0, 10, size=(steps_per_call, batch_size), dtype=np.int32)),
    }
    normalize = Normalizer([127.5] * image_shape[-1], [64.0] * image_shape[-1])
    step = jax.jit(
        lambda s, m, b: train_steps(s, m, {**b, "image": normalize(b["image"])}, objective), donate_argnums=(0, 1)
    )
    metrics = TrainMetrics.empty()
    state, metrics, _ = step(state, metrics, batches)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(calls):
        state, metrics, _ = step(state, metrics, batches)
    jax.block_until_ready(state)
    return calls * steps_per_call * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=30, help="timed jitted-call chunks per measurement")
    parser.add_argument("--steps-per-call", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=4, help="host threads (data.workers)")
    parser.add_argument("--imagenet-images", type=int, default=512, help="distinct JPEGs generated")
    parser.add_argument("--data-dir", default=None, help="TFDS data dir holding (or receiving) the digits")
    args = parser.parse_args()

    hardware = hardware_lib.setup(hardware_lib.HardwareConfig())
    inputs = {
        "digits": digits_split(args.data_dir),
        "cifar": cifar_split(),
        "imagenet": imagenet_split(args.imagenet_images, args.workers),
    }
    cores = os.cpu_count() or 1
    print(f"{cores} cores; batch {args.batch_size}; {args.steps_per_call} steps per call; {args.workers} workers")
    print(f"{'input':<10}{'loader img/s':>14}{'per core':>10}{'step demand img/s':>20}{'loader / demand':>17}")
    for name, split in inputs.items():
        calls = args.calls if name != "imagenet" else max(1, args.calls // 10)
        steps_per_call = args.steps_per_call if name != "imagenet" else 1
        loader = TrainLoader(split, args.batch_size, 0, hardware, prefetch=2, workers=args.workers)
        supply = loader_images_per_sec(loader, calls, steps_per_call)
        loader.close()
        shape = split.images.shape[1:] if isinstance(split, InMemorySplit) else split.image_shape
        demand = demand_images_per_sec(tuple(shape), args.batch_size, args.steps_per_call, args.calls)
        print(f"{name:<10}{supply:>14.0f}{supply / cores:>10.0f}{demand:>20.0f}{supply / demand:>17.2f}")


if __name__ == "__main__":
    main()
