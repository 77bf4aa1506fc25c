"""Data-parallel scaling: images/s per device on one device and on all of them.

Trains ``model`` (default ViT-B/16) on synthetic 224x224 images through the
Trainer with a fixed batch per device (weak scaling: the global batch grows
with the device count), timed after compilation and warm-up. The one-device
and all-device runs alternate for ``--repeats`` rounds in this one process,
and every repeat is printed; efficiency is the all-device images/s per device
over the one-device images/s (medians).

    python bench/scaling.py [--per-device-batch 32] [--steps 20] [--repeats 3] [hydra overrides ...]

Made for a machine with GPUs (``hardware=gpu_multi``: the first GPU alone,
as ``gpu_single`` trains, then every GPU). ``--cpu-devices N
hardware=cpu model=vit data.image_shape=[8,8,3]`` runs the same code on
virtual CPU devices: a check that it runs, not a measurement of scaling
(virtual devices share the same cores).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import jax

import jaxclf.config.schema  # noqa: F401  (registers the schema)
import record  # bench/ is on sys.path when this script runs
from jaxclf import hardware as hardware_lib
from jaxclf.build import build_classifier, build_data, typed
from jaxclf.hardware import Hardware, HardwareConfig, make_mesh
from jaxclf.trainer import Trainer, TrainerConfig
from overhead import Stopwatch  # bench/ is on sys.path when this script runs
from workload import composed

DEFAULTS = ["model=vit_b16", "data=synthetic", "hardware=gpu_multi"]


def images_per_sec(cfg, hardware: Hardware, per_device_batch: int, warmup: int, steps: int) -> float:
    """Training images/s on ``hardware`` over ``steps`` after ``warmup`` (one step per call)."""
    cfg.data.batch_size = per_device_batch * hardware.num_devices
    cfg.data.synthetic_examples.train = max(cfg.data.synthetic_examples.train, cfg.data.batch_size)
    classifier, data = build_classifier(cfg, hardware), build_data(cfg, hardware)
    stopwatch = Stopwatch(warmup, warmup + steps)
    with tempfile.TemporaryDirectory() as workdir:
        trainer = Trainer(TrainerConfig(max_steps=warmup + steps, steps_per_call=1), hardware, [stopwatch], workdir)
        trainer.fit(classifier, data)
        trainer.close()
    data.close()
    assert stopwatch.elapsed is not None
    return steps * cfg.data.batch_size / stopwatch.elapsed.wall_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-device-batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpu-devices", type=int, default=None, help="virtual CPU devices (hardware=cpu)")
    args, overrides = parser.parse_known_args()
    cfg = composed([*DEFAULTS, *overrides, "evaluation.train_examples=0"])
    if args.cpu_devices:
        cfg.hardware.cpu_devices = args.cpu_devices
    devices = hardware_lib.setup(typed(cfg.hardware, HardwareConfig)).mesh.devices.flatten().tolist()
    if len(devices) < 2:
        raise SystemExit(f"scaling: error: one {devices[0].platform} device here; scaling needs two or more")
    meshes = {1: Hardware(make_mesh(devices[:1], 1)), len(devices): Hardware(make_mesh(devices, 1))}
    model = cfg.model._target_.rsplit(".", 1)[-1]
    print(f"{model} on {list(cfg.data.image_shape)} images, {args.per_device_batch} per device")
    print(f"{'devices':>8} {'repeat':>6} {'images/s':>10} {'per device':>11}")
    results: dict[int, list[float]] = {count: [] for count in meshes}
    for repeat in range(args.repeats):
        for count, hardware in meshes.items():  # interleaved: drift hits both alike
            rate = images_per_sec(cfg, hardware, args.per_device_batch, args.warmup, args.steps)
            results[count].append(rate)
            print(f"{count:>8} {repeat:>6} {rate:>10.1f} {rate / count:>11.1f}", flush=True)
            jax.clear_caches()
    single, multi = (statistics.median(results[count]) for count in meshes)
    count = len(devices)
    print(f"median images/s per device: 1 device {single:.1f}, {count} devices {multi / count:.1f}")
    print(f"scaling efficiency on {count} devices: {multi / count / single:.2f}")


if __name__ == "__main__":
    record.run(main)
