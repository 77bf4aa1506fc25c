"""Launch cost: wall time of ``python launch.py`` and its time to the first step,
with JAX's compilation cache empty (a first launch) and filled (a second).

Each repeat runs the default job (``python launch.py``, the MLP on the
embedded digits, prepared beforehand) twice in fresh processes: first with
an empty ``hardware.compilation_cache_dir``, then again with the cache the
first one filled. The time to the first step is from just before the
process starts to the end of the first jitted training call (a callback
added with ``+callbacks.first_step``). ``--root`` times another checkout's
``launch.py`` (e.g. an older commit) with the same clock.

    python bench/startup.py [--repeats 5] [--root .] [hydra overrides ...]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

import record  # bench/ is on sys.path when this script runs
from jaxclf.callbacks import Callback

BENCH_DIR = Path(__file__).resolve().parent
T0_VARIABLE = "JAXCLF_BENCH_T0"  # time.time() just before the launch
FIRST_STEP_VARIABLE = "JAXCLF_BENCH_FIRST_STEP"  # where the callback writes its reading


class FirstStep(Callback):
    """Writes the seconds from the launch to the end of the first training call."""

    def __init__(self) -> None:
        self.done = False

    def on_train_steps_end(self, trainer, state, step):
        if not self.done:
            jax.block_until_ready(state)
            seconds = time.time() - float(os.environ[T0_VARIABLE])
            Path(os.environ[FIRST_STEP_VARIABLE]).write_text(f"{seconds:.3f}")
            self.done = True


def launch(root: Path, cache_dir: str, overrides: list[str]) -> tuple[float, float]:
    """Wall seconds of one launch, and its seconds to the first step."""
    with tempfile.TemporaryDirectory() as scratch:
        reading = Path(scratch) / "first_step"
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(root / "src"), str(BENCH_DIR), os.environ.get("PYTHONPATH", "")]),
            FIRST_STEP_VARIABLE: str(reading),
        }
        command = [
            sys.executable,
            "launch.py",
            f"hydra.run.dir={scratch}/run",
            "+callbacks.first_step._target_=startup.FirstStep",
            *overrides,
        ]
        if cache_dir:
            command.append(f"hardware.compilation_cache_dir={cache_dir}")
        environment[T0_VARIABLE] = repr(time.time())
        start = time.perf_counter()
        result = subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"launch failed ({result.returncode}): {result.stderr.strip().splitlines()[-1]}")
        return wall, float(reading.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="first-then-second launch pairs")
    parser.add_argument("--root", type=Path, default=BENCH_DIR.parent, help="the checkout whose launch.py runs")
    parser.add_argument("--no-cache-key", action="store_true", help="for checkouts without compilation_cache_dir")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. model=vit")
    args = parser.parse_args()

    launch(args.root, "", args.overrides)  # prepares the dataset, warms the OS's file cache
    results: dict[str, list[tuple[float, float]]] = {"first launch": [], "second launch": []}
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            cache_dir = "" if args.no_cache_key else cache
            results["first launch"].append(launch(args.root, cache_dir, args.overrides))
            results["second launch"].append(launch(args.root, cache_dir, args.overrides))

    print(f"{args.root}: python launch.py {' '.join(args.overrides)}; {args.repeats} repeats, medians")
    print(f"{'':<15}{'wall s':>8}{'to first step s':>17}   every repeat (wall / first step)")
    for name, values in results.items():
        walls, firsts = [wall for wall, _ in values], [first for _, first in values]
        each = ", ".join(f"{wall:.1f}/{first:.1f}" for wall, first in values)
        print(f"{name:<15}{statistics.median(walls):>8.1f}{statistics.median(firsts):>17.1f}   {each}")


if __name__ == "__main__":
    record.run(main)
