"""Sweep wall time: Hydra's default launcher (jobs one after another in one
process) against the joblib launcher (``--parallel`` worker processes).

Each sweep is ``python launch.py -m seed=0,...,N-1`` plus any overrides given,
timed from start to exit; the two launchers alternate for ``--repeats``
rounds (these machines are noisy) and the medians are compared. The jobs'
test accuracies are checked to be the same under both.

    python bench/launchers.py [--jobs 4] [--parallel 2] [--repeats 2] [key=value ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import record  # bench/ is on sys.path when this script runs

ROOT = Path(__file__).resolve().parents[1]


def sweep(launcher_overrides: list[str], jobs: int, overrides: list[str], sweep_dir: str) -> tuple[float, list[float]]:
    """Runs one sweep; returns its wall time and the jobs' test accuracies, by seed."""
    seeds = ",".join(str(seed) for seed in range(jobs))
    command = [sys.executable, str(ROOT / "launch.py"), "-m", f"seed={seeds}", "callbacks.progress_bar=null"]
    start = time.perf_counter()
    subprocess.run(
        [*command, *launcher_overrides, *overrides, f"hydra.sweep.dir={sweep_dir}"], check=True, capture_output=True
    )
    elapsed = time.perf_counter() - start
    summaries = [json.loads(path.read_text()) for path in Path(sweep_dir).glob("*/summary.json")]
    by_seed = sorted((summary["hparams"]["seed"], summary["test"]["accuracy"]) for summary in summaries)
    return elapsed, [accuracy for _, accuracy in by_seed]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=4, help="jobs per sweep (seeds)")
    parser.add_argument("--parallel", type=int, default=2, help="joblib worker processes")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="launch.py overrides for every job")
    args = parser.parse_args()

    launchers = {
        "default (in process)": [],
        f"joblib, n_jobs={args.parallel}": ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.parallel}"],
    }
    times: dict[str, list[float]] = {name: [] for name in launchers}
    accuracies: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for repeat in range(args.repeats):
            for index, (name, launcher_overrides) in enumerate(launchers.items()):
                elapsed, accuracies[name] = sweep(
                    launcher_overrides, args.jobs, args.overrides, f"{scratch}/{repeat}-{index}"
                )
                times[name].append(elapsed)
    baseline = statistics.median(times["default (in process)"])
    print(f"{args.jobs} jobs per sweep, median of {args.repeats}")
    print(f"{'launcher':<24} {'wall s':>8} {'speed-up':>9}")
    for name, measured in times.items():
        median = statistics.median(measured)
        print(f"{name:<24} {median:8.1f} {baseline / median:9.2f}")
    same = len({tuple(values) for values in accuracies.values()}) == 1
    print("test accuracies " + ("identical" if same else f"DIFFER: {accuracies}"))


if __name__ == "__main__":
    record.run(main)
