"""Model throughput on this machine: train-step images/s and achieved GFLOP/s.

For each model, one jitted, donated ``train_step`` (forward, backward, AdamW)
runs on random batches of the model's input shape; XLA's cost analysis of that
compiled step gives its FLOPs, so GFLOP/s = FLOPs per step × steps/s. The
ceiling beside it is NumPy's float32 matrix multiply (SGEMM) measured in the
same run, since these machines are noisy.

Each measurement also counts the process's minor page faults per step: memory
the kernel maps and zeroes anew (``hardware.keep_host_memory``; with
``--glibc-malloc-defaults`` the allocator is left as the process starts).
``--variants`` compares environments that must be set before the process
starts (``MALLOC_ARENA_MAX=1``, ``XLA_FLAGS=...``): every repeat runs the
bench once in a fresh process per variant and once as it is, the order
rotating, and prints every repeat.

    python bench/models.py [--models vit vit_ti16] [--steps 20] [--repeats 3] [--glibc-malloc-defaults]
    python bench/models.py --variants MALLOC_ARENA_MAX=1 XLA_FLAGS=--xla_cpu_use_onednn=true
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import jax
import numpy as np
from hydra.utils import instantiate

import jaxclf.config.schema  # noqa: F401  (registers the schema)
import record  # bench/ is on sys.path when this script runs
from jaxclf.host_memory import keep_freed_memory
from jaxclf.steps_per_call import compiled_flops
from jaxclf.train_state import create_train_state, train_step
from workload import composed, random_batch, seconds  # bench/ is on sys.path when this script runs

# The data each model is sized for: its shapes only (the batches are random).
DATA_FOR_MODEL = {"vit": "digits", "vit_ti16": "imagenet2012"}


def sgemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` NumPy float32 ``size × size`` matmul rate."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    a @ b  # warm-up
    best = min(seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def train_step_rate(model_name: str, batch_size: int, steps: int) -> dict[str, float]:
    """images/s and GFLOP/s of the model's train step, after compilation."""
    # '~recipe': the model's own architecture, not a recipe's changes to it (vit_digits' patches)
    cfg = composed([f"model={model_name}", f"data={DATA_FOR_MODEL.get(model_name, 'digits')}", "~recipe"])
    model, tx, objective = instantiate(cfg.model), instantiate(cfg.optim), instantiate(cfg.loss)
    state = create_train_state(model, tx, tuple(cfg.data.image_shape), jax.random.key(0))
    batch = random_batch(cfg, batch_size, pixels=False)
    step = jax.jit(functools.partial(train_step, objective=objective), donate_argnums=0)
    compiled = step.lower(state, batch).compile()
    flops = compiled_flops(compiled)

    for _ in range(3):  # warm-up: every worker thread has run the step
        state, _ = compiled(state, batch)
    jax.block_until_ready(state)
    faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    for _ in range(steps):
        state, _ = compiled(state, batch)
    jax.block_until_ready(state)
    seconds = (time.perf_counter() - start) / steps
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
    return {
        "images_per_s": batch_size / seconds,
        "gflops": flops / seconds / 1e9,
        "gflop_per_step": flops / 1e9,
        "faults_per_step": faults,
    }


def compare_variants(args: argparse.Namespace, forwarded: list[str]) -> None:
    """Each of ``args.variants`` (``NAME=VALUE`` environments) against the
    environment as it is, alternating fresh processes of this bench."""
    variants = ["as is", *args.variants]
    rates: dict[str, dict[str, list[float]]] = {variant: {m: [] for m in args.models} for variant in variants}
    for repeat in range(args.repeats):
        for variant in variants[repeat % len(variants) :] + variants[: repeat % len(variants)]:
            environment = dict(os.environ)
            if variant != "as is":
                name, _, value = variant.partition("=")
                environment[name] = value
            command = [sys.executable, __file__, *forwarded, "--repeats", "1", "--json"]
            result = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
            for model, row in json.loads(result.stdout.splitlines()[-1]).items():
                rates[variant][model].append(row["images_per_s"])
    for model in args.models:
        print(f"{model}: images/s, median of {args.repeats} (every repeat)")
        for variant in variants:
            values = rates[variant][model]
            each = ", ".join(f"{value:.2f}" for value in values)
            print(f"  {variant:<48}{statistics.median(values):9.2f}   ({each})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit", "vit_ti16"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[128, 16], help="one per model")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="alternating measurements")
    parser.add_argument("--glibc-malloc-defaults", action="store_true", help="leave glibc's malloc as it starts")
    parser.add_argument("--variants", nargs="+", default=[], help="NAME=VALUE environments to compare")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)  # one measurement, for --variants
    args = parser.parse_args()
    if len(args.batch_sizes) != len(args.models):
        parser.error("give one --batch-sizes value per model")
    if args.variants:
        forwarded = ["--models", *args.models, "--batch-sizes", *map(str, args.batch_sizes), "--steps", str(args.steps)]
        compare_variants(args, forwarded + ["--glibc-malloc-defaults"] * args.glibc_malloc_defaults)
        return
    if not args.glibc_malloc_defaults:
        keep_freed_memory()  # as a run's hardware.setup does

    rows: dict[str, list[dict[str, float]]] = {name: [] for name in args.models}
    ceilings: list[float] = []
    for _ in range(args.repeats):
        ceilings.append(0.0 if args.json else sgemm_gflops())
        for name, batch_size in zip(args.models, args.batch_sizes, strict=True):
            rows[name].append(train_step_rate(name, batch_size, args.steps))
    if args.json:
        print(json.dumps({name: runs[0] for name, runs in rows.items()}))
        return
    _print_table(rows, args.batch_sizes, statistics.median(ceilings), args.repeats)


def _print_table(rows: dict[str, list[dict[str, float]]], batch_sizes: list[int], ceiling: float, repeats: int) -> None:
    print(
        f"NumPy SGEMM ceiling: {ceiling:.1f} GFLOP/s "
        f"(median of {repeats}; {jax.device_count()} {jax.default_backend()} device)"
    )
    columns = ("batch", 6), ("GFLOP/step", 12), ("images/s", 11), ("GFLOP/s", 10), ("of SGEMM", 10), ("faults/step", 13)
    print(f"{'model':<10}" + "".join(f"{name:>{width}}" for name, width in columns))
    for (name, runs), batch_size in zip(rows.items(), batch_sizes, strict=True):
        images = statistics.median(r["images_per_s"] for r in runs)
        gflops = statistics.median(r["gflops"] for r in runs)
        faults = statistics.median(r["faults_per_step"] for r in runs)
        print(
            f"{name:<10}{batch_size:>6}{runs[0]['gflop_per_step']:>12.2f}"
            f"{images:>11.1f}{gflops:>10.1f}{gflops / ceiling:>10.2f}{faults:>13,.0f}"
        )
        each = ", ".join(f"{r['images_per_s']:.1f}" for r in runs)
        print(f"{'':<16}every repeat, images/s: {each}")


if __name__ == "__main__":
    record.run(main)
