"""The benchmark scripts still run (tiny budgets; their timings are not asserted)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow  # ~2 min together: a smoke test of each script, no timing asserted


def test_overhead_benchmark_runs(data_dir):
    result = subprocess.run(
        [
            sys.executable,
            "bench/overhead.py",
            "--steps",
            "20",
            "--warmup",
            "10",
            "--repeats",
            "1",
            f"data.data_dir={data_dir}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.split()[1:2] in (["stop"], ["skip"])]
    # Both loops at 1 and 10 steps per call, under each policy.
    assert [(row[0], row[1], row[-3]) for row in rows[::2]] == [
        ("1", "stop", "loop"),
        ("1", "skip", "loop"),
        ("10", "stop", "loop"),
        ("10", "skip", "loop"),
    ]
    assert result.stdout.count("steps/call, ") == 4  # a ratio line per pair


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_models_benchmark_runs_as_it_is_and_against_an_environment_variant():
    tiny = ("bench/models.py", "--models", "vit", "--batch-sizes", "8", "--steps", "1", "--repeats", "1")
    result = _run(*tiny)
    assert result.returncode == 0, result.stderr
    assert "SGEMM ceiling" in result.stdout
    assert [line.split()[0] for line in result.stdout.splitlines()[2:]] == ["vit", "every"]
    assert result.stdout.splitlines()[1].split()[-1] == "faults/step"
    result = _run(*tiny, "--variants", "MALLOC_ARENA_MAX=1")
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == ["as", "MALLOC_ARENA_MAX=1"]


def test_figures_benchmark_runs():
    result = _run("bench/figures.py", "--repeats", "1")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 7  # the heading and six rows


def test_a_recorded_bench_writes_what_it_printed_with_the_commit_and_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("JAXCLF_BENCH_RESULTS", str(tmp_path))
    result = _run("bench/figures.py", "--repeats", "1", "--record")
    assert result.returncode == 0, result.stderr
    record = (tmp_path / "figures.md").read_text()
    assert "| command | `python bench/figures.py --repeats 1` |" in record  # the flag itself left out
    assert "| commit | " in record and "| processor | " in record and "| cores | " in record
    assert result.stdout in record  # every line it printed


def test_input_benchmark_runs_each_loader_on_real_images_in_memory_and_as_jpegs(fetched_data_dir, tmp_path):
    result = _run(
        "bench/input.py",
        *("--cases", "mnist_5k", "jpeg_folder", "--jpeg-source", "mnist_5k", "--jpegs-per-class", "10"),
        *("--repeats", "1", "--steps-scale", "0.05", "--data-dir", fetched_data_dir, "--work-dir", str(tmp_path)),
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("  ") and line.split()]
    assert rows == ["loader", "jaxclf", "tf.data", "grain", "resident"] * 2
    assert sorted(path.name for path in (tmp_path / "mnist_5k_jpegs_10").iterdir()) == [f"class_{n}" for n in range(10)]


def test_device_benchmark_dry_run_compiles_the_same_programs_on_the_cpu():
    result = subprocess.run(
        ["bash", "bench/device.sh", "--dry-run"],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith(("ViT", "ResNet"))]
    assert [row.split()[0] for row in rows] == ["ViT-S/16", "ViT-B/16", "ResNet-50"]
    assert not [row for row in rows if "failed" in row], rows
    assert "ImageNet input pipeline" in result.stdout


def test_checkpoint_benchmark_runs(data_dir):
    result = _run(
        "bench/checkpoint.py",
        "--models",
        "mlp",
        "--repeats",
        "1",
        "--steps",
        "20",
        "--every",
        "10",
        "--data-dir",
        data_dir,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[2].startswith("| mlp | 85,002 |")
    assert "with one every 10 steps" in result.stdout


def test_launchers_benchmark_runs(data_dir):
    result = _run(
        "bench/launchers.py", "--jobs", "1", "--repeats", "1", "trainer.max_steps=10", f"data.data_dir={data_dir}"
    )
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()
    assert rows[2].startswith("default (in process)") and rows[2].split()[-1] == "1.00"
    assert rows[3].startswith("joblib, n_jobs=2")
    assert rows[4] == "test accuracies identical"  # the launcher changes where jobs run, not what they compute


def test_scaling_benchmark_runs_on_virtual_cpu_devices():
    result = _run(
        "bench/scaling.py",
        *("--cpu-devices", "2", "--per-device-batch", "4", "--warmup", "1", "--steps", "2", "--repeats", "1"),
        *("hardware=cpu", "model=vit", "data.image_shape=[8,8,3]", "data.num_classes=10"),
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["1", "2"]  # one device, then both
    assert "scaling efficiency on 2 devices:" in result.stdout
