"""jaxclf installs like a tool: a wheel whose ``jaxclf`` command trains from any directory."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.mark.slow  # builds and installs a wheel, then trains: ~15 s
def test_a_wheel_built_from_the_repo_trains_through_jaxclf_from_another_directory(tmp_path, data_dir):
    source = tmp_path / "source"  # a copy: building writes build/ and *.egg-info beside the sources
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    wheels = tmp_path / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), "."]
    built = subprocess.run(build, cwd=source, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = wheels.glob("jaxclf-*.whl")
    installed = tmp_path / "installed"  # the wheel alone; its dependencies are this environment's
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(installed), str(wheel)]
    installed_wheel = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert installed_wheel.returncode == 0, installed_wheel.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(installed)}
    run_dir = elsewhere / "run"
    result = subprocess.run(
        [str(installed / "bin" / "jaxclf"), f"data.data_dir={data_dir}", "trainer.max_steps=20", "hydra.run.dir=run"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run_dir / "summary.json").read_text())["steps"] == 20
    config_sources = (run_dir / ".hydra" / "hydra.yaml").read_text()
    assert "path: jaxclf.conf\n      schema: pkg" in config_sources  # the package's configs, not a conf/ folder
    where = [sys.executable, "-c", "import jaxclf.cli; print(jaxclf.cli.__file__)"]
    imported = subprocess.run(where, cwd=elsewhere, env=env, capture_output=True, text=True, check=True).stdout
    assert imported.startswith(str(installed)), imported  # the wheel's jaxclf, not the repo's
