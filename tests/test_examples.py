"""The README's example of training a flax model of one's own without Hydra runs as written."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT, checkpoint_steps, tensorboard_scalars


@pytest.mark.slow  # ~11 s on 2 cores
def test_training_without_hydra(tmp_path):
    result = subprocess.run(
        [sys.executable, "examples/train_without_hydra.py", "--steps", "100", "--workdir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    accuracies = dict(re.findall(r"^(validation|test): accuracy (\d\.\d+)", result.stdout, re.MULTILINE))
    assert set(accuracies) == {"validation", "test"} and float(accuracies["test"]) > 0.9
    assert checkpoint_steps(tmp_path) == [100]
    scalars = tensorboard_scalars(tmp_path)
    assert [step for step, _ in scalars["train/loss"]] == [50, 100]
    assert round(dict(scalars["test/accuracy"])[100], 4) == float(accuracies["test"])
