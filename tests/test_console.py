"""What a run prints: jaxclf's own log lines and the progress bar, nothing from the libraries."""

from __future__ import annotations

import re

import pytest

from conftest import run_launch

JAXCLF_LINE = re.compile(r"^\[[\d\-: ,]+\]\[jaxclf[.\w]*\]\[(INFO|WARNING)\] - ")
PROGRESS_BAR = re.compile(r"^\s*\d+%\|.*\| \d+/\d+ \[")


def screen_lines(text: str) -> list[str]:
    """What a terminal would show as separate lines (tqdm redraws with carriage returns)."""
    return [line for line in re.split(r"[\r\n]", text) if line.strip()]


@pytest.mark.slow  # ~21 s on 2 cores
def test_a_first_default_run_prints_only_jaxclf_lines_and_the_progress_bar(tmp_path):
    run_dir = tmp_path / "run"
    result = run_launch(  # a fresh data dir: the digits are prepared too
        f"hydra.run.dir={run_dir}", f"data.data_dir={tmp_path / 'tfds'}", "trainer.max_steps=100"
    )
    assert result.returncode == 0, result.stderr
    stdout = screen_lines(result.stdout)
    assert [line for line in stdout if not JAXCLF_LINE.match(line)] == []
    assert [line for line in screen_lines(result.stderr) if not PROGRESS_BAR.match(line)] == []
    assert (run_dir / "launch.log").read_text().splitlines() == stdout
    messages = [line.split(" - ", 1)[1] for line in stdout]
    assert any(message.startswith("Preparing digits into") for message in messages)
    assert "Compiling the training step..." in messages
    assert any(re.fullmatch(r"Compiled the training step in \d+\.\d s", message) for message in messages)
    last = re.fullmatch(
        r"test accuracy (0\.\d{4}), NLL (\d\.\d{4}), ECE (0\.\d{4}) after 100 steps; \d+\.\d s since launch; "
        r"results in (.+)",
        messages[-1],
    )
    assert last is not None, messages[-1]
    assert last[4] == str(run_dir)
    assert "loss=" in result.stderr  # the bar shows the training loss


@pytest.mark.slow  # a launch in a fresh process, ~8 s
def test_the_libraries_speak_again_with_hydra_verbose(tmp_path, data_dir):
    result = run_launch(
        f"hydra.run.dir={tmp_path / 'run'}",
        f"data.data_dir={data_dir}",
        "trainer.max_steps=20",
        "callbacks=none",
        "hydra.verbose=true",
    )
    assert result.returncode == 0, result.stderr
    assert "][absl][" in result.stdout  # TFDS's and orbax's notices


def test_a_stop_message_starts_on_its_own_line_after_the_final_bar(tmp_path, data_dir):
    result = run_launch(
        f"hydra.run.dir={tmp_path / 'run'}",
        f"data.data_dir={data_dir}",
        "trainer.max_steps=40",
        "callbacks.evaluation.every_steps=20",
        "optim.learning_rate=1e30",
    )
    assert result.returncode == 3, result.stderr
    before, message = result.stderr.rsplit("jaxclf: stopped: ", 1)
    assert before.endswith("\n") and PROGRESS_BAR.match(screen_lines(before)[-1])
    assert message.count("\n") == 1 and message.startswith("non-finite loss")  # nothing drawn after it


_MODULES_AT_EXIT = """
import atexit, runpy, sys
atexit.register(lambda: print("LOADED", *sorted({name.split(".")[0] for name in sys.modules}), file=sys.stderr))
sys.argv = ["launch.py", *sys.argv[1:]]
runpy.run_path("launch.py", run_name="__main__")
"""


BAD_INPUT = [
    # jaxclf's own checks: values, the ViT's sizes, the built-in targets' arguments and choices
    ("trainer.max_steps=-5", "trainer.max_steps=-5 is not valid; it must be a positive integer"),
    ("model=vit model.num_heads=5", "model.num_heads=5 does not divide hidden_size=64"),
    ("model=vit model.patch_size=3", "model.patch_size=3 does not divide the image shape [8, 8, 1]"),
    ("loss.label_smoothing=2", "loss.label_smoothing=2.0 is not valid; it must lie in [0, 1]"),
    ("loss=distill loss.teacher=x loss.alpha=3", "loss.alpha=3.0 is not valid; it must lie in [0, 1]"),
    ("callbacks.checkpoint.max_to_keep=0", "callbacks.checkpoint.max_to_keep=0 is not valid"),
    ("callbacks.tensorboard.every_steps=0", "callbacks.tensorboard.every_steps=0 is not valid"),
    ("callbacks.checkpoint.mode=maxx", "callbacks.checkpoint.mode=maxx is not valid for jaxclf.callbacks"),
    # Hydra's own: a missing option, an unknown key, a wrong type, bad syntax
    ("model=foo", "Could not find 'model/foo'; Available options in 'model': cnn, linear, mlp,"),
    ("model.depth=3", "Could not override 'model.depth'; Key 'depth' not in 'Builds_MLP'"),
    ("optim.learning_rate=abc", "optim.learning_rate=abc; Value 'abc' of type 'str' could not be converted to Float"),
    ("model.depth=[1", "model.depth=[1: no viable alternative at input '[1'"),
]


@pytest.mark.parametrize(("overrides", "message"), BAD_INPUT, ids=[case for case, _ in BAD_INPUT])
def test_a_bad_value_is_one_line_before_jax_checkpointing_or_tensorflow_load(tmp_path, overrides, message):
    import subprocess
    import sys

    from conftest import ROOT

    result = subprocess.run(
        [sys.executable, "-c", _MODULES_AT_EXIT, f"hydra.run.dir={tmp_path}", *overrides.split()],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    error, loaded = result.stderr.split("LOADED ")
    assert error.startswith("jaxclf: error: ") and error.count("\n") == 1, error
    assert message in error
    heavy = {"jax", "flax", "optax", "orbax", "tensorflow", "tensorflow_datasets", "tensorboard"}
    assert not heavy & set(loaded.split())
