"""Trainer loop overhead: steps/s of ``Trainer.fit`` against a bare jitted loop.

Both train the default model (``python launch.py``'s MLP on digits) with the
same optimizer, loss, batch size and ``train_step``, in this one process, after
compilation. The bare loop is what one writes by hand: a numpy permutation per
epoch, ``jax.device_put`` of each batch, one jitted, donated step per call, no
metrics, logging, evaluation or checkpoints. The Trainer runs with the
default callbacks (train metrics merged on device and written to TensorBoard
every ``callbacks.tensorboard.every_steps``, the progress bar off), with
evaluation and checkpointing pushed to the last step, outside the timed window.

    python bench/overhead.py [--steps 3000] [--repeats 3] [hydra overrides ...]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

import jaxclf.config  # noqa: F401  (registers the schema)
from jaxclf import hardware as hardware_lib
from jaxclf.callbacks import Callback
from jaxclf.data.splits import InMemorySplit
from jaxclf.run import build, build_data
from jaxclf.train_state import create_train_state, train_step

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


class Stopwatch(Callback):
    """Times the steps after warm-up, waiting for the device at both ends."""

    def __init__(self, start_step: int, end_step: int):
        self.start_step, self.end_step = start_step, end_step
        self.seconds = float("nan")
        self._t0 = 0.0

    def on_train_steps_end(self, trainer, state, step):
        if step == self.start_step:
            jax.block_until_ready(state)
            self._t0 = time.perf_counter()
        elif step == self.end_step:
            jax.block_until_ready(state)
            self.seconds = time.perf_counter() - self._t0


def trainer_steps_per_sec(
    cfg, warmup: int, steps: int, steps_per_call: int, checkpoint_every_steps: int | None = None
) -> float:
    """``Trainer.fit``'s steps/s over ``steps`` after ``warmup``; evaluation (and,
    unless ``checkpoint_every_steps``, checkpointing) only at the end."""
    total = warmup + steps
    cfg.trainer.max_steps = total
    cfg.trainer.steps_per_call = steps_per_call
    cfg.callbacks.evaluation.every_steps = total
    cfg.callbacks.checkpoint.every_steps = checkpoint_every_steps or total
    cfg.callbacks.progress_bar = None
    stopwatch = Stopwatch(warmup, total)
    with tempfile.TemporaryDirectory() as workdir:
        trainer, classifier, data = build(cfg, workdir, [stopwatch])
        trainer.fit(classifier, data)
        trainer.close()
    data.close()
    return steps / stopwatch.seconds


def bare_loop_steps_per_sec(cfg, split: InMemorySplit, warmup: int, steps: int) -> float:
    """A hand-written loop over the same data, model, optimizer and step."""
    batch_size = cfg.data.batch_size
    steps_per_epoch = len(split) // batch_size
    model, tx, objective = instantiate(cfg.model), instantiate(cfg.optim), instantiate(cfg.loss)
    state = create_train_state(model, tx, split.images.shape[1:], jax.random.PRNGKey(cfg.seed))
    step_fn = jax.jit(functools.partial(train_step, objective=objective), donate_argnums=0)
    rng = np.random.default_rng(cfg.seed)
    permutation = rng.permutation(len(split))

    def run(first: int, count: int):
        nonlocal state, permutation
        for step in range(first, first + count):
            position = step % steps_per_epoch
            if position == 0:
                permutation = rng.permutation(len(split))
            rows = permutation[position * batch_size : (position + 1) * batch_size]
            batch = {"image": jax.device_put(split.images[rows]), "label": jax.device_put(split.labels[rows])}
            state, _ = step_fn(state, batch)
        jax.block_until_ready(state)

    run(0, warmup)
    start = time.perf_counter()
    run(warmup, steps)
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="alternating measurements of each loop")
    parser.add_argument("--warmup", type=int, default=200, help="untimed steps first (compilation)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=linear")
    args = parser.parse_args()

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=args.overrides)
    data = build_data(cfg, hardware_lib.setup(OmegaConf.to_object(cfg.hardware)))
    split = data.train.split
    data.close()

    results: dict[str, list[float]] = {"bare loop": [], "Trainer, 1 step/call": [], "Trainer, 10 steps/call": []}
    for _ in range(args.repeats):
        results["bare loop"].append(bare_loop_steps_per_sec(cfg, split, args.warmup, args.steps))
        results["Trainer, 1 step/call"].append(trainer_steps_per_sec(cfg.copy(), args.warmup, args.steps, 1))
        results["Trainer, 10 steps/call"].append(trainer_steps_per_sec(cfg.copy(), args.warmup, args.steps, 10))

    bare = statistics.median(results["bare loop"])
    print(f"model={cfg.model._target_} batch={cfg.data.batch_size} steps={args.steps} repeats={args.repeats}")
    print(f"{'loop':<24}{'steps/s (median)':>18}{'all runs':>30}{'ratio vs bare':>16}")
    for name, values in results.items():
        median = statistics.median(values)
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"{name:<24}{median:>18.0f}{runs:>30}{median / bare:>16.3f}")


if __name__ == "__main__":
    main()
