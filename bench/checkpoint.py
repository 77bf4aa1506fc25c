"""Checkpoint cost: how long a save blocks training, and how long it takes.

For each model, a real TrainState (AdamW: parameters plus two moments, the
moments filled with random values as after training) is saved with
``CheckpointStore`` (orbax, asynchronous): ``blocking`` is the time
until ``save`` returns and training could go on (the copy from device to host
memory), ``total`` until the checkpoint is committed on disk. A synchronous
save would block for ``total``.

Then the default model trains with a checkpoint every ``--every`` steps and
with none (over the second half of ``--steps``, after compilation), in this
one process: the ratio of their steps/s (medians of ``--repeats``
interleaved runs) is what the saves cost training.

    python bench/checkpoint.py [--models mlp,vit_s16] [--repeats 3] [--steps 6000] [--every 500] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
from hydra.utils import instantiate

import jaxclf.config.schema  # noqa: F401  (registers the schema)
import record  # bench/ is on sys.path when this script runs
from jaxclf.checkpointing import CheckpointStore, Retention
from jaxclf.train_state import count_params, create_train_state
from overhead import configured, trainer_timing  # bench/ is this script's directory
from workload import composed  # bench/ is on sys.path when this script runs

# The default model; timm's ViT-S/16 at 224x224 (without the ImageNet recipe's batch and augmentation).
MODELS = {"mlp": [], "vit_s16": ["model=vit_s16", "data=imagenet2012", "~recipe"]}


def _directory_bytes(directory: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(directory) for name in names)


def _random_like(leaf: jax.Array) -> jax.Array:
    if not jnp.issubdtype(leaf.dtype, jnp.floating):
        return leaf
    return jax.random.normal(jax.random.PRNGKey(leaf.size), leaf.shape, leaf.dtype)


def save_times(overrides: list[str], repeats: int) -> dict[str, float]:
    cfg = composed(overrides)
    model, tx = instantiate(cfg.model), instantiate(cfg.optim)
    state = jax.jit(lambda rng: create_train_state(model, tx, tuple(cfg.data.image_shape), rng))(jax.random.PRNGKey(0))
    # A trained state's moments are not the zeros of initialisation (which compress away).
    state = state.replace(opt_state=jax.tree.map(_random_like, state.opt_state))
    jax.block_until_ready(state)
    blocking, total = [], []
    with tempfile.TemporaryDirectory() as directory:
        store = CheckpointStore(directory, Retention(latest=1))
        for step in range(1, repeats + 2):  # the first save warms up orbax
            start = time.perf_counter()
            store.save(step, state, {"config": None})
            returned = time.perf_counter()
            store.wait_until_finished()
            if step > 1:
                blocking.append(returned - start)
                total.append(time.perf_counter() - start)
        size = _directory_bytes(os.path.join(directory, str(repeats + 1)))
        store.close()
    return {
        "params": count_params(state),
        "megabytes": size / 1e6,
        "blocking_s": statistics.median(blocking),
        "total_s": statistics.median(total),
    }


def training_steps_per_sec(steps: int, checkpoint_every: int, data_dir: str | None) -> float:
    """The default model's steps/s over the second half of ``steps`` (the first compiles)."""
    overrides = [
        *([f"data.data_dir={data_dir}"] if data_dir else []),
        "callbacks.tensorboard.images=false",
    ]
    warmup = steps // 2
    cfg = configured(overrides, warmup, steps - warmup, None, checkpoint_every=checkpoint_every)
    return (steps - warmup) / trainer_timing(cfg, warmup, steps - warmup).wall_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,vit_s16", help=f"comma-separated, of {', '.join(MODELS)}")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--every", type=int, default=500, help="checkpoint period of the training comparison")
    parser.add_argument("--data-dir", default=None, help="TFDS data dir holding the digits (default: TFDS's)")
    args = parser.parse_args()

    print("| model | parameters | checkpoint MB | save blocks training (s) | save committed (s) | blocking / total |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.models.split(","):
        times = save_times(MODELS[name], args.repeats)
        print(
            f"| {name} | {times['params']:,} | {times['megabytes']:.1f} | {times['blocking_s']:.3f} | "
            f"{times['total_s']:.3f} | {times['blocking_s'] / times['total_s']:.2f} |"
        )
    runs: dict[int, list[float]] = {args.steps: [], args.every: []}
    for _ in range(args.repeats):  # interleaved, so both see the same machine
        for every in runs:
            runs[every].append(training_steps_per_sec(args.steps, every, args.data_dir))
    without, with_saves = (statistics.median(runs[every]) for every in (args.steps, args.every))
    print(
        f"\nDefault model, {args.steps} steps, median of {args.repeats}: {without:,.0f} steps/s with one checkpoint "
        f"at the end, {with_saves:,.0f} with one every {args.every} steps ({with_saves / without:.2f}x)"
    )


if __name__ == "__main__":
    record.run(main)
