"""The benchmark scripts still run (tiny budgets; their timings are not asserted)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_overhead_benchmark_runs(data_dir):
    result = subprocess.run(
        [sys.executable, "bench/overhead.py", "--steps", "20", "--warmup", "10", "--repeats", "1", f"data.data_dir={data_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith(("bare loop", "Trainer"))]
    assert len(rows) == 3
    assert rows[0].split()[-1] == "1.000"  # the baseline's ratio to itself
