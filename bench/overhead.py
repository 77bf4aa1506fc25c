"""Trainer loop overhead: ``Trainer.fit`` against a bare loop doing the same work.

Both loops train the default model (``python launch.py``'s MLP on digits) in
this one process, at the same ``k`` steps per jitted call, on the same data
path (``TrainLoader.batches``: the same gather, augmentation and device
arrays), through the same jitted program (``Classifier.train_steps``:
normalisation on device, ``lax.scan`` over the k steps, the training metrics
merged on device, the same ``on_nonfinite`` policy). The bare loop never
reads anything back until its stopwatch stops; the Trainer runs its default
callbacks (TensorBoard logging, which reads and resets the metrics every
``LOG_EVERY`` = 50 steps) with evaluation and checkpoints after
the timed window and the progress bar off.

Each repeat measures every (k, policy) pair, bare loop and Trainer in turn,
the order alternating between repeats. Printed: wall and process-CPU time
per step (medians), the Trainer / bare-loop ratio of steps/s (median, and
every repeat).

    python bench/overhead.py [--steps 1000] [--repeats 9] [hydra overrides ...]
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass

import jax

import jaxclf.config.schema  # noqa: F401  (registers the schema)
import record  # bench/ is on sys.path when this script runs
from jaxclf.build import build
from jaxclf.callbacks import Callback
from jaxclf.metrics import TrainMetrics
from workload import composed  # bench/ is on sys.path when this script runs

POLICIES = ("stop", "skip")
# The Trainer's training scalars every 50 steps (big_vision's default period):
# the loop's overhead, not the cost of logging, which the bare loop does not do.
# (The default job logs every 10 steps; on the default MLP that cost ~13% more
# CPU per step here.)
LOG_EVERY = 50


@dataclass
class Timing:
    wall_s: float
    cpu_s: float

    @classmethod
    def start(cls) -> Timing:
        return cls(time.perf_counter(), time.process_time())

    def since(self, start: Timing) -> Timing:
        return Timing(self.wall_s - start.wall_s, self.cpu_s - start.cpu_s)


class Stopwatch(Callback):
    """Times the steps from ``start_step`` to ``end_step``, waiting for the
    device at both ends; runs before every other callback."""

    order = -1

    def __init__(self, start_step: int, end_step: int):
        self.start_step, self.end_step = start_step, end_step
        self.elapsed: Timing | None = None
        self._start = Timing.start()

    def on_train_steps_end(self, trainer, state, step):
        if step == self.start_step:
            jax.block_until_ready(state)
            self._start = Timing.start()
        elif step == self.end_step:
            jax.block_until_ready(state)
            self.elapsed = Timing.start().since(self._start)


def configured(
    overrides: list[str],
    warmup: int,
    steps: int,
    steps_per_call: int | None,
    policy: str = "stop",
    checkpoint_every: int | None = None,
):
    """The config of a timed run: evaluation (and, unless ``checkpoint_every``,
    checkpoints) only at the end, the progress bar off."""
    total = warmup + steps
    return composed(
        [
            *overrides,
            f"trainer.max_steps={total}",
            f"trainer.steps_per_call={'null' if steps_per_call is None else steps_per_call}",
            f"trainer.on_nonfinite={policy}",
            f"callbacks.evaluation.every_steps={total}",
            f"callbacks.tensorboard.every_steps={LOG_EVERY}",
            f"callbacks.checkpoint.every_steps={checkpoint_every or total}",
            "callbacks.progress_bar=null",
        ]
    )


def trainer_timing(cfg, warmup: int, steps: int) -> Timing:
    """``Trainer.fit`` over ``steps`` after ``warmup`` (evaluation and checkpoint after the window)."""
    stopwatch = Stopwatch(warmup, warmup + steps)
    with tempfile.TemporaryDirectory() as workdir:
        trainer, classifier, data = build(cfg, workdir, [stopwatch])
        trainer.fit(classifier, data)
        trainer.close()
    data.close()
    assert stopwatch.elapsed is not None
    return stopwatch.elapsed


def bare_loop_timing(cfg, warmup: int, steps: int) -> Timing:
    """A hand-written loop: the same program and batches, nothing read back."""
    steps_per_call = cfg.trainer.steps_per_call
    with tempfile.TemporaryDirectory() as workdir:
        _, classifier, data = build(cfg, workdir)
    train_steps = jax.jit(
        functools.partial(classifier.train_steps, halt_on_nonfinite=cfg.trainer.on_nonfinite == "stop"),
        donate_argnums=(0, 1),
    )
    state = jax.jit(classifier.init)(jax.random.PRNGKey(cfg.seed))
    metrics = TrainMetrics.empty()
    start = Timing.start()
    for step in range(0, warmup + steps, steps_per_call):
        if step == warmup:
            jax.block_until_ready(state)
            start = Timing.start()
        state, metrics = train_steps(state, metrics, data.train.batches(step, steps_per_call), classifier.objective)
    jax.block_until_ready(state)
    elapsed = Timing.start().since(start)
    data.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved measurements of each loop")
    parser.add_argument("--warmup", type=int, default=100, help="untimed steps first (compilation)")
    parser.add_argument("--steps-per-call", type=int, nargs="+", default=[1, 10])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=linear")
    args = parser.parse_args()

    loops = {"bare loop": bare_loop_timing, "Trainer": trainer_timing}
    timings: dict[tuple[int, str, str], list[Timing]] = defaultdict(list)
    for repeat in range(args.repeats):
        for steps_per_call in args.steps_per_call:
            for policy in POLICIES:
                cfg = configured(args.overrides, args.warmup, args.steps, steps_per_call, policy)
                names = list(loops) if repeat % 2 == 0 else list(reversed(loops))
                for name in names:
                    timings[steps_per_call, policy, name].append(loops[name](cfg, args.warmup, args.steps))

    print(f"{args.steps} timed steps after {args.warmup}; {args.repeats} interleaved repeats; medians")
    print(f"{'steps/call':>10} {'on_nonfinite':>12} {'loop':>10} {'wall ms/step':>13} {'CPU ms/step':>12}")
    for (steps_per_call, policy, name), values in timings.items():
        wall = statistics.median(t.wall_s for t in values) / args.steps * 1e3
        cpu = statistics.median(t.cpu_s for t in values) / args.steps * 1e3
        print(f"{steps_per_call:>10} {policy:>12} {name:>10} {wall:>13.3f} {cpu:>12.3f}")
    print("Trainer steps/s ÷ bare loop steps/s (by wall time), per repeat:")
    for steps_per_call in args.steps_per_call:
        for policy in POLICIES:
            bare, trainer = timings[steps_per_call, policy, "bare loop"], timings[steps_per_call, policy, "Trainer"]
            ratios = [b.wall_s / t.wall_s for b, t in zip(bare, trainer, strict=True)]
            each = ", ".join(f"{ratio:.3f}" for ratio in ratios)
            print(f"  {steps_per_call:>2} steps/call, {policy}: median {statistics.median(ratios):.3f} ({each})")


if __name__ == "__main__":
    record.run(main)
