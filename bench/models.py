"""Model throughput on this machine: train-step images/s and achieved GFLOP/s.

For each model, one jitted, donated ``train_step`` (forward, backward, AdamW)
runs on random batches of the model's input shape; XLA's cost analysis of that
compiled step gives its FLOPs, so GFLOP/s = FLOPs per step × steps/s. The
ceiling beside it is NumPy's float32 matrix multiply (SGEMM) measured in the
same run, since these machines are noisy.

    python bench/models.py [--models vit vit_ti16] [--steps 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import jax
import numpy as np
from hydra.utils import instantiate

import jaxclf.config  # noqa: F401  (registers the schema)
from jaxclf.describe import compiled_flops
from jaxclf.host_memory import keep_freed_memory
from jaxclf.train_state import create_train_state, train_step
from workload import composed, random_batch  # bench/ is on sys.path when this script runs

# The data each model is sized for: its shapes only (the batches are random).
DATA_FOR_MODEL = {"vit": "digits", "vit_ti16": "imagenet2012"}


def sgemm_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Best-of-``repeats`` NumPy float32 ``size × size`` matmul rate."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((size, size), dtype=np.float32) for _ in range(2))
    a @ b  # warm-up
    best = min(_seconds(lambda: a @ b) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


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

    state, _ = compiled(state, batch)  # warm-up
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(steps):
        state, _ = compiled(state, batch)
    jax.block_until_ready(state)
    seconds = (time.perf_counter() - start) / steps
    return {"images_per_s": batch_size / seconds, "gflops": flops / seconds / 1e9, "gflop_per_step": flops / 1e9}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vit", "vit_ti16"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[128, 16], help="one per model")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="alternating measurements")
    args = parser.parse_args()
    if len(args.batch_sizes) != len(args.models):
        parser.error("give one --batch-sizes value per model")
    keep_freed_memory()  # as a run's hardware.setup does

    rows: dict[str, list[dict[str, float]]] = {name: [] for name in args.models}
    ceilings: list[float] = []
    for _ in range(args.repeats):
        ceilings.append(sgemm_gflops())
        for name, batch_size in zip(args.models, args.batch_sizes, strict=True):
            rows[name].append(train_step_rate(name, batch_size, args.steps))

    ceiling = statistics.median(ceilings)
    print(
        f"NumPy SGEMM ceiling: {ceiling:.1f} GFLOP/s "
        f"(median of {args.repeats}; {jax.device_count()} {jax.default_backend()} device)"
    )
    print(f"{'model':<10}{'batch':>6}{'GFLOP/step':>12}{'images/s':>11}{'GFLOP/s':>10}{'of SGEMM':>10}")
    for (name, runs), batch_size in zip(rows.items(), args.batch_sizes, strict=True):
        images = statistics.median(r["images_per_s"] for r in runs)
        gflops = statistics.median(r["gflops"] for r in runs)
        print(
            f"{name:<10}{batch_size:>6}{runs[0]['gflop_per_step']:>12.2f}"
            f"{images:>11.1f}{gflops:>10.1f}{gflops / ceiling:>10.2f}"
        )


if __name__ == "__main__":
    main()
