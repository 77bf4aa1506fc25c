"""One accelerator's numbers in one go (``bench/device.sh`` runs it).

For each program: its compile time, training images/s on synthetic data
(bf16 activations, one step per call, after warm-up) and the model FLOP
utilisation: XLA's cost analysis of the compiled step (FLOPs per step) ÷ the
step time ÷ the accelerator's peak dense bf16 FLOP/s (``PEAK_BF16_FLOPS``,
looked up by device kind). Programs: ViT-S/16 and ViT-B/16 with XLA's and
cuDNN's attention, ResNet-50; then the ImageNet input pipeline's images/s on
this machine's cores (JPEG decode, Inception crop, flip, as for
``data=imagenet2012``) on generated 224x224 JPEGs.

``--dry-run`` compiles and runs the same programs on the CPU at tiny sizes
(32x32 images, narrow and shallow models, XLA attention): a check that the
script works, not a measurement.

    python bench/device.py [--dry-run] [--steps 20] [--warmup 3]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import time
from dataclasses import dataclass

import jax
import numpy as np
from PIL import Image

import jaxclf.config.schema  # noqa: F401  (registers the schema)
import record  # bench/ is on sys.path when this script runs
from jaxclf import hardware as hardware_lib
from jaxclf.data.augment import Augmenter
from jaxclf.data.loader import TrainLoader
from jaxclf.data.splits import EncodedSplit
from workload import TrainingStep, composed, random_batch  # bench/ is on sys.path when this script runs

# Dense bf16 peaks from the vendors' data sheets (no sparsity), by a word of jax's device_kind.
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L4": 121e12, "V5E": 197e12, "V4": 275e12}
ANCHORS = (
    "NVIDIA JAX-Toolbox ViT-B/16: 1,459 img/s per H100 (about 16% MFU)",
    "NVIDIA ResNet-50 (DeepLearningExamples): 2,470 img/s with AMP on one A100",
)


@dataclass(frozen=True)
class Program:
    name: str
    overrides: tuple[str, ...]
    batch_size: int


def programs(dry_run: bool) -> list[Program]:
    if dry_run:
        tiny = ("model.depth=2", "data.image_shape=[32,32,3]", "model.attention_impl=xla")
        return [
            Program("ViT-S/16 xla (tiny)", ("model=vit_s16", "model.hidden_size=32", "model.num_heads=2", *tiny), 4),
            Program("ViT-B/16 xla (tiny)", ("model=vit_b16", "model.hidden_size=48", "model.num_heads=3", *tiny), 4),
            Program("ResNet-50 (32x32)", ("model=resnet50", "data.image_shape=[32,32,3]"), 4),
        ]
    return [
        Program(f"{name} {attention}", (f"model={model}", f"model.attention_impl={attention}"), batch)
        for name, model, batch in (("ViT-S/16", "vit_s16", 256), ("ViT-B/16", "vit_b16", 128))
        for attention in ("xla", "cudnn")
    ] + [Program("ResNet-50", ("model=resnet50",), 256)]


def peak_flops(device: jax.Device) -> float | None:
    kind = device.device_kind.upper().replace(" ", "")
    return next((peak for name, peak in PEAK_BF16_FLOPS.items() if name in kind), None)


def measure(program: Program, dtype: str, steps: int, warmup: int) -> dict[str, float]:
    """Compile time, images/s and FLOPs per step of one training program."""
    cfg = composed(
        [
            "data=synthetic",
            f"hardware.compute_dtype={dtype}",
            f"data.batch_size={program.batch_size}",
            *program.overrides,
        ]
    )
    step = TrainingStep(cfg)
    batches = random_batch(cfg, program.batch_size, leading=(1,))
    start = time.perf_counter()
    compiled = step.lower(batches).compile()
    compile_s = time.perf_counter() - start
    state, metrics, objective = step.state, step.metrics, step.classifier.objective
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    for _ in range(warmup):
        state, metrics = compiled(state, metrics, batches, objective)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = compiled(state, metrics, batches, objective)
    jax.block_until_ready(state)
    seconds = (time.perf_counter() - start) / steps
    return {"compile_s": compile_s, "images_per_s": program.batch_size / seconds, "flops": cost.get("flops", 0.0)}


def imagenet_split(num_images: int, workers: int) -> EncodedSplit:
    """JPEGs of smooth random images (JPEG-compressible, like photographs), 224x224, quality 90."""
    rng = np.random.default_rng(0)
    records = []
    for index in range(num_images):
        coarse = rng.integers(0, 256, size=(14, 14, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(coarse).resize((224, 224), Image.Resampling.BICUBIC).save(buffer, format="JPEG", quality=90)
        records.append({"image": buffer.getvalue(), "label": index % 1000})
    augment = Augmenter(inception_crop=True, horizontal_flip=True)
    return EncodedSplit(records, np.arange(num_images), (224, 224, 3), augment, workers)


def loader_images_per_sec(loader: TrainLoader, calls: int) -> float:
    """The loader alone: images/s of ``batches`` over ``calls`` one-step calls (after one untimed)."""
    jax.block_until_ready(loader.batches(0, 1))  # warm-up: first call, threads started
    start = time.perf_counter()
    for call in range(1, calls + 1):
        jax.block_until_ready(loader.batches(call, 1))
    return calls * loader.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="the same programs on the CPU at tiny sizes")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per program")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--input-images", type=int, default=512, help="distinct JPEGs for the input pipeline")
    args = parser.parse_args()
    steps, warmup = (2, 1) if args.dry_run else (args.steps, args.warmup)

    hardware = hardware_lib.setup(
        hardware_lib.HardwareConfig(platform="cpu" if args.dry_run else "gpu", local_devices=1)
    )
    device = hardware.mesh.devices.flat[0]
    peak = peak_flops(device)
    print(f"{device.device_kind} ({device.platform}); peak dense bf16: {f'{peak / 1e12:.0f} TFLOP/s' if peak else '?'}")
    print(f"{'program':<24}{'batch':>6}{'compile s':>11}{'img/s':>10}{'GFLOP/step':>12}{'MFU':>8}")
    for program in programs(args.dry_run):
        try:
            result = measure(program, "float32" if args.dry_run else "bfloat16", steps, warmup)
        except Exception as error:  # noqa: BLE001  (one program's failure is a row, not the end of the run)
            print(f"{program.name:<24} failed: {str(error).strip().splitlines()[0][:200]}")
            continue
        step_flops = result["flops"]
        mfu = f"{step_flops * result['images_per_s'] / program.batch_size / peak:.1%}" if peak else "-"
        print(
            f"{program.name:<24}{program.batch_size:>6}{result['compile_s']:>11.1f}{result['images_per_s']:>10.0f}"
            f"{step_flops / 1e9:>12.2f}{mfu:>8}"
        )

    workers = os.cpu_count() or 1
    split = imagenet_split(32 if args.dry_run else args.input_images, workers)
    loader = TrainLoader(split, 16 if args.dry_run else 64, 0, hardware, workers=workers)
    rates = [loader_images_per_sec(loader, 2 if args.dry_run else 10) for _ in range(3)]
    loader.close()
    each = ", ".join(f"{rate:.0f}" for rate in rates)
    print(f"ImageNet input pipeline, {workers} workers: {statistics.median(rates):.0f} img/s (median of {each})")
    print("Anchors:", *ANCHORS, sep="\n  ")


if __name__ == "__main__":
    record.run(main)
