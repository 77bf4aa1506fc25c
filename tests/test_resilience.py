"""Never lose a run: exact resume after SIGKILL, preemption, damaged
checkpoints, non-finite losses, and bad input that leaves a run untouched."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from conftest import (
    ROOT,
    TINY,
    checkpoint_steps,
    digest,
    environment_with_tests,
    final_params,
    launch_in_process,
    tensorboard_scalars,
)


def _launch_command(run_dir: Path, data_dir: str, *overrides: str) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "launch.py"),
        f"hydra.run.dir={run_dir}",
        f"data.data_dir={data_dir}",
        "callbacks.progress_bar=null",
        *overrides,
    ]


def _start_and_wait_for_a_checkpoint(command: list[str], run_dir: Path) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and process.poll() is None:
        if (run_dir / "checkpoints").exists() and checkpoint_steps(run_dir):
            return process
        time.sleep(0.02)
    process.kill()
    raise AssertionError(
        f"no checkpoint appeared; the run ended with {process.poll()}: {process.communicate()[1][-2000:]}"
    )


# Randomness in every step, so that a resumed run that replayed anything differently would show.
RANDOM_STEPS = (
    "trainer.max_steps=100",
    "callbacks.checkpoint.every_steps=40",
    "callbacks.evaluation.every_steps=50",
    "callbacks.tensorboard.every_steps=20",
    "loss.label_smoothing=0.1",
    "loss.mixup_alpha=0.2",
    "model.dropout_rate=0.1",
    "trainer.ema_decay=0.9",  # the weights' moving average resumes exactly too
    "callbacks.tensorboard.images=false",
)
KILLS = {  # phase of the run -> the SignalAtStep that kills it there
    "before the first checkpoint": ("step", 20),
    "during a save": ("after_save", 40),
    "between two saves": ("step", 60),
    "as the final evaluation starts": ("fit_end", 0),
    "between the final evaluation and summary.json": ("test_end", 0),
}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    result = subprocess.run(
        _launch_command(run_dir, data_dir, *RANDOM_STEPS), cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


@pytest.mark.slow  # a killed launch and a rerun per phase, ~20 s each
@pytest.mark.parametrize("phase", KILLS)
def test_a_run_killed_at_any_phase_resumes_bitwise_identically(tmp_path, data_dir, uninterrupted, phase):
    kind, step = KILLS[phase]
    kill = (
        "+callbacks.kill._target_=conftest.SignalAtStep",
        f"+callbacks.kill.phase={kind}",
        f"+callbacks.kill.step={step}",
        f"+callbacks.kill.signal_number={int(signal.SIGKILL)}",
    )
    command = _launch_command(tmp_path, data_dir, *RANDOM_STEPS)
    killed = subprocess.run(
        [*command, *kill], cwd=ROOT, env=environment_with_tests(), capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "summary.json").exists()

    code, stderr = launch_in_process(*command[2:])  # the same command again
    assert code == 0, stderr
    for whole, resumed in zip(final_params(uninterrupted), final_params(tmp_path), strict=True):
        np.testing.assert_array_equal(whole, resumed)
    summaries = [json.loads((run / "summary.json").read_text()) for run in (uninterrupted, tmp_path)]
    assert summaries[0]["test"] == summaries[1]["test"]


@pytest.mark.slow  # ~16 s on 2 cores
def test_sigterm_saves_the_step_in_flight_and_exits_cleanly(tmp_path, data_dir, caplog):
    signal_number = signal.SIGTERM
    command = _launch_command(
        tmp_path,
        data_dir,
        "trainer.max_steps=100000",
        "callbacks.checkpoint.every_steps=50",
        "callbacks.evaluation.every_steps=100000",
    )
    process = _start_and_wait_for_a_checkpoint(command, tmp_path)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal_number
    assert "Traceback" not in stderr
    [message] = [line for line in stderr.splitlines() if line.startswith("jaxclf: stopped:")]
    stopped_at = int(re.search(r"stopped at step (\d+) of 100000", message).group(1))
    assert "run the same command again to resume" in message
    assert max(checkpoint_steps(tmp_path)) == stopped_at >= 50

    # The same command with a shorter budget picks up from there.
    caplog.set_level(logging.INFO)
    code, stderr = launch_in_process(
        *command[2:-3], f"trainer.max_steps={stopped_at + 10}", "callbacks.evaluation.every_steps=100000"
    )
    assert code == 0, stderr
    assert f"Resuming from the checkpoint of step {stopped_at}" in caplog.text
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == stopped_at + 10


def test_ctrl_c_saves_the_step_in_flight_and_exits_cleanly(tmp_path, data_dir):
    handler_before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest runs in the background
    code, stderr = launch_in_process(
        f"hydra.run.dir={tmp_path}",
        f"data.data_dir={data_dir}",
        *TINY,
        "trainer.steps_per_call=1",
        "+callbacks.interrupt._target_=conftest.SignalAtStep",
        "+callbacks.interrupt.step=27",
        f"+callbacks.interrupt.signal_number={int(signal.SIGINT)}",
    )
    assert code == 130, stderr
    [message] = [line for line in stderr.splitlines() if line.startswith("jaxclf: stopped:")]
    assert message.startswith("jaxclf: stopped: SIGINT received: stopped at step 27 of 60")
    assert checkpoint_steps(tmp_path) == [20, 27] and not (tmp_path / "summary.json").exists()
    assert signal.getsignal(signal.SIGINT) is handler_before  # the handler is put back


@pytest.mark.parametrize("damage", ["truncate", "remove"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(tmp_path, finished_run, data_dir, damage, caplog):
    caplog.set_level(logging.INFO)
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    (run_dir / "summary.json").unlink()  # as if killed just after its last checkpoint
    latest = run_dir / "checkpoints" / "60"
    if damage == "truncate":
        for path in (latest / "state").rglob("*"):
            if path.is_file():
                path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:
        shutil.rmtree(latest / "state")
    before = digest(run_dir / "checkpoints" / "40")

    assert launch_in_process(f"hydra.run.dir={run_dir}", f"data.data_dir={data_dir}", *TINY)[0] == 0
    assert "The checkpoint of step 60 is unreadable" in caplog.text
    assert "Resuming from the checkpoint of step 40" in caplog.text
    assert digest(run_dir / "corrupt_checkpoints" / "60")  # set aside, never deleted
    assert checkpoint_steps(run_dir) == [20, 40, 60]
    assert digest(run_dir / "checkpoints" / "40") == before
    # Steps 41..60 again, exactly as the first time.
    for original, redone in zip(final_params(finished_run), final_params(run_dir), strict=True):
        np.testing.assert_array_equal(original, redone)


@pytest.mark.slow  # ~11 s on 2 cores
def test_a_nonfinite_loss_stops_the_run_naming_the_step_and_last_good_checkpoint(tmp_path, data_dir):
    # A learning rate of 1e30 overflows within a few steps; a checkpoint every step.
    code, stderr = launch_in_process(
        f"hydra.run.dir={tmp_path}",
        f"data.data_dir={data_dir}",
        *TINY,
        "optim.learning_rate=1e30",
        "callbacks.checkpoint.every_steps=1",
    )
    assert code == 3 and "Traceback" not in stderr
    [message] = [line for line in stderr.splitlines() if line.startswith("jaxclf: stopped:")]
    bad_step = int(re.search(r"non-finite loss or gradients at step (\d+)", message).group(1))
    assert f"last good checkpoint: step {bad_step - 1} in " in message
    assert checkpoint_steps(tmp_path) == list(range(max(1, bad_step - 3), bad_step))
    assert all(np.isfinite(leaf).all() for leaf in final_params(tmp_path))
    assert not (tmp_path / "summary.json").exists()

    # Read only where a callback is due (every 20 steps), the same step is named and nothing after it saved.
    code, stderr = launch_in_process(
        f"hydra.run.dir={tmp_path / 'sparse'}", f"data.data_dir={data_dir}", *TINY, "optim.learning_rate=1e30"
    )
    assert code == 3 and f"non-finite loss or gradients at step {bad_step} " in stderr
    assert checkpoint_steps(tmp_path / "sparse") == []


def test_skipping_nonfinite_updates_counts_them_and_never_saves_them(tmp_path, data_dir, caplog):
    caplog.set_level(logging.INFO)
    code, stderr = launch_in_process(
        f"hydra.run.dir={tmp_path}",
        f"data.data_dir={data_dir}",
        *TINY,
        "optim.learning_rate=1e30",
        "trainer.on_nonfinite=skip",
        "trainer.max_skipped_fraction=1",
    )
    assert code == 0, stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 60 and 50 <= summary["skipped_steps"] < 60
    skipped = dict(tensorboard_scalars(tmp_path)["train/skipped_steps"])
    assert skipped[60] == summary["skipped_steps"] and skipped[20] <= skipped[40] <= skipped[60]
    losses = dict(tensorboard_scalars(tmp_path)["train/loss"])
    assert np.isfinite(losses[20])  # the mean over the applied steps only (NaN: none applied)
    assert all(np.isfinite(leaf).all() for leaf in final_params(tmp_path))
    [last_line] = [record.getMessage() for record in caplog.records if record.getMessage().startswith("test accuracy")]
    assert f"{summary['skipped_steps']} of 60 updates skipped (non-finite)" in last_line


def test_skipping_more_than_the_allowed_fraction_stops_the_run(tmp_path, data_dir):
    code, stderr = launch_in_process(
        f"hydra.run.dir={tmp_path}",
        f"data.data_dir={data_dir}",
        *TINY,
        "optim.learning_rate=1e30",
        "trainer.on_nonfinite=skip",
    )
    assert code == 3 and "Traceback" not in stderr
    [message] = [line for line in stderr.splitlines() if line.startswith("jaxclf: stopped:")]
    assert re.search(r"(\d+) of the first 20 updates were skipped .* trainer.max_skipped_fraction=0.1", message)
    assert not (tmp_path / "summary.json").exists()


def test_non_finite_results_are_null_in_strict_json(tmp_path):
    from jaxclf.modes import _write_results, final_line

    results = {"test": {"accuracy": 0.36, "nll": float("nan")}, "steps": 60, "hparams": {"x": float("inf")}}
    written = _write_results(str(tmp_path / "summary.json"), results)
    on_disk = json.loads((tmp_path / "summary.json").read_text())  # strict: NaN would not parse as null
    assert on_disk == written and on_disk["test"]["nll"] is None and on_disk["hparams"]["x"] is None
    assert on_disk["non_finite"] == ["test.nll", "hparams.x"]
    assert final_line(written).endswith("non-finite results (null in the JSON): test.nll, hparams.x")
    assert "NLL non-finite after 60 steps" in final_line(written)


BAD_INPUTS = [
    # Hydra's own checks, in one line: it names the key or option (and lists the choices).
    (("model=vitt",), 2, "Could not find 'model/vitt'"),
    (("trainer.max_stepz=5",), 2, "trainer.max_stepz"),
    (("trainer.max_steps=abc",), 2, "trainer.max_steps=abc"),
    (("seed=1.5",), 2, "seed=1.5"),
    # Closed choices are Enums: Hydra names the key and lists the choices.
    (("trainer.on_nonfinite=ignore",), 2, "Error merging override trainer.on_nonfinite=ignore"),
    (("model=vit", "model.pool=max"), 2, "Error merging override model.pool=max"),
    # jaxclf's checks: one line naming the key, the value and what is valid.
    (("optim.learning_rate=-1",), 2, "optim.learning_rate=-1.0 is not valid; it must be positive and finite"),
    (("optim.learning_rate=0",), 2, "optim.learning_rate=0.0 is not valid; it must be positive and finite"),
    (("optim.learning_rate=nan",), 2, "optim.learning_rate=nan is not valid; it must be positive and finite"),
    (("optim.learning_rate=inf",), 2, "optim.learning_rate=inf is not valid; it must be positive and finite"),
    (("predict.top_k=0",), 2, "predict.top_k=0 is not valid; it must be a positive integer"),
    (("predict.top_k=-2",), 2, "predict.top_k=-2 is not valid; it must be a positive integer"),
    (("data.batch_size=0",), 2, "data.batch_size=0 is not valid"),
    (("data.batch_size=5000",), 2, "data.batch_size=5000 is larger than the training split (1300 examples)"),
    (("trainer.max_steps=0",), 2, "trainer.max_steps=0 is not valid; it must be a positive integer"),
    (("seed=-1",), 2, "seed=-1 is not valid; it must be 0 or more"),
    (("model.num_classes=3",), 2, "model.num_classes=3 is not valid; data.digits/classes has 10 classes"),
    (("trainer.max_skipped_fraction=2",), 2, "trainer.max_skipped_fraction=2.0 is not valid; it must lie in [0, 1]"),
    (("trainer.ema_decay=1.5",), 2, "trainer.ema_decay=1.5 is not valid; it must lie in (0, 1)"),
    (("hardware=tpu_v4",), 2, "hardware.distributed: jax.distributed.initialize() failed"),
    (
        ("model=vit", "model.attention_impl=cudnn"),
        2,
        "model.attention_impl=cudnn cannot be used: it runs on GPUs only (this is cpu); use attention_impl=auto or xla",
    ),
    (("model=vit", "model.attention_impl=flash"), 2, "Error merging override model.attention_impl=flash"),
    (
        ("hydra.run.dir=/tmp/ünï",),
        2,
        """hydra.run.dir=/tmp/ünï: quote a value with non-ASCII characters, as hydra.run.dir='"/tmp/ünï"'""",
    ),
    (
        ("callbacks.evaluation.every_steps=-5",),
        2,
        "callbacks.evaluation.every_steps=-5 is not valid; it must be a positive integer",
    ),
    (
        ("callbacks=early_stopping", "callbacks.early_stopping.monitor=acc"),
        2,
        "callbacks.early_stopping.monitor=acc is not valid",
    ),
    (
        ("callbacks=early_stopping", "callbacks.early_stopping.mode=down"),
        2,
        "callbacks.early_stopping.mode=down is not valid",
    ),
    (
        ("callbacks=early_stopping", "callbacks.early_stopping.patience=0"),
        2,
        "callbacks.early_stopping.patience=0 is not valid",
    ),
    (
        ("+callbacks.evaluation.bogus=1",),
        2,
        "callbacks.evaluation.bogus is not a parameter of jaxclf.callbacks.PeriodicEvaluation",
    ),
    (
        ("+callbacks.probe._target_=no.such.Callback",),
        2,
        "callbacks.probe._target_=no.such.Callback is not an importable object",
    ),
    (("callbacks=none", "experiment=overfitting"), 2, "callbacks.evaluation has no _target_"),
    (("model=vit", "model.patch_size=3"), 2, "model.patch_size=3 does not divide the image shape [8, 8, 1]"),
    (("model=vit", "model.num_heads=3"), 2, "model.num_heads=3 does not divide hidden_size=64"),
    (("loss.label_smoothing=1.5",), 2, "loss.label_smoothing=1.5 is not valid; it must lie in [0, 1]"),
    (
        ("loss=distill", "loss.teacher=TEACHER", "loss.temperature=0"),
        2,
        "loss.temperature=0.0 is not valid; it must be positive",
    ),
    (("data.train_examples=5000",), 2, "data.train_examples=5000 is not valid; it must be between 1 and"),
    (("data.image_shape=[16,16,1]",), 2, "data.image_shape=[16, 16, 1] does not match the dataset's images [8, 8, 1]"),
    (("data.std=[0.0]",), 2, "data.std=[0.0] is not valid; every value must be positive"),
    (("data.mean=[1.0,2.0]",), 2, "data.mean=[1.0, 2.0] is not valid; it needs one value per channel (1)"),
    (("data.validation_holdout=10",), 2, "data.splits.validation=validation and data.validation_holdout=10"),
    (("hardware=gpu_single",), 2, "hardware.platform='gpu': JAX finds no gpu devices"),
    (("data=imagenet2012",), 2, "data.name=imagenet2012 is not prepared in"),
    (("loss=distill",), 2, "loss.teacher=None is not a run directory"),
    (("loss=distill", "loss.teacher=/no/such/run"), 2, "loss.teacher='/no/such/run' is not a run directory"),
    (
        ("loss=distill", "loss.teacher=TEACHER", "data=digits_parity"),
        2,
        "was trained with data.name=digits/classes; this run has data.name=digits/parity",
    ),
    (
        ("optim.learning_rate=0.01", "model.hidden_sizes=[64]"),
        2,
        "holds a run of another config; differing keys: model.hidden_sizes",
    ),
    (("trainer.resume=false",), 2, "trainer.resume=false but"),
]


@pytest.fixture(scope="module")
def protected_run(finished_run):
    """The finished run, its teacher copy, and digests of what must never change."""
    teacher = finished_run.parent / "teacher"
    if not teacher.exists():
        shutil.copytree(finished_run, teacher)
    return finished_run, teacher


@pytest.mark.parametrize("overrides,exit_code,message", BAD_INPUTS, ids=[" ".join(case[0]) for case in BAD_INPUTS])
def test_bad_input_is_one_clear_line_and_leaves_the_run_untouched(
    protected_run, data_dir, overrides, exit_code, message
):
    run_dir, teacher = protected_run
    checkpoints, summary = digest(run_dir / "checkpoints"), (run_dir / "summary.json").read_bytes()
    overrides = [override.replace("TEACHER", str(teacher)) for override in overrides]

    # With callbacks=none there is no callback for TINY's callbacks.* keys to set.
    tiny = [key for key in TINY if "callbacks=none" not in overrides or not key.startswith("callbacks.")]
    code, stderr = launch_in_process(f"hydra.run.dir={run_dir}", f"data.data_dir={data_dir}", *tiny, *overrides)

    assert code == exit_code, stderr
    assert "Traceback" not in stderr
    if exit_code == 2:
        [line] = [line for line in stderr.splitlines() if line.startswith("jaxclf: error:")]
        assert message in line
    else:
        assert message in stderr.strip().splitlines()[0]
    assert digest(run_dir / "checkpoints") == checkpoints
    assert (run_dir / "summary.json").read_bytes() == summary


def test_hydra_full_error_shows_the_traceback(protected_run, data_dir, monkeypatch):
    from jaxclf.errors import ConfigError

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match="optim.learning_rate=-1.0"):
        launch_in_process(f"hydra.run.dir={protected_run[0]}", f"data.data_dir={data_dir}", "optim.learning_rate=-1")


EARLY_STOPPING = (
    "callbacks=early_stopping",
    "trainer.max_steps=1000",
    "optim.total_steps=1000",
    "callbacks.evaluation.every_steps=50",
    "callbacks.checkpoint.every_steps=50",
    "callbacks.tensorboard.every_steps=50",
    "callbacks.checkpoint.max_to_keep=2",
    "callbacks.progress_bar=null",
    "callbacks.tensorboard.images=false",
    "callbacks.early_stopping.monitor=loss",
    "callbacks.early_stopping.mode=min",
    "callbacks.early_stopping.patience=3",
)


@pytest.mark.slow  # ~18 s on 2 cores
def test_early_stopping_tests_the_best_checkpoint_and_survives_a_resume(tmp_path, data_dir):
    code, stderr = launch_in_process(
        f"hydra.run.dir={tmp_path / 'whole'}", f"data.data_dir={data_dir}", *EARLY_STOPPING
    )
    assert code == 0, stderr
    whole = json.loads((tmp_path / "whole" / "summary.json").read_text())
    stopping = whole["early_stopping"]
    best, stopped = stopping["best_step"], stopping["stopped_at"]
    assert stopped == best + 3 * 50 < 1000 and whole["steps"] == stopped
    assert whole["tested_step"] == best and whole["validation"]["loss"] == pytest.approx(stopping["best_value"])
    validation_losses = dict(tensorboard_scalars(tmp_path / "whole")["eval/loss"])
    assert min(validation_losses.values()) == pytest.approx(stopping["best_value"])
    assert checkpoint_steps(tmp_path / "whole") == [best, stopped - 50, stopped]  # the best is kept beside the latest 2

    # Interrupted after one evaluation without improvement, then resumed: it
    # counts on from the checkpoint and stops where the whole run stopped.
    interrupted = (tmp_path / "parts", f"data.data_dir={data_dir}")
    code, stderr = launch_in_process(
        f"hydra.run.dir={interrupted[0]}", interrupted[1], *EARLY_STOPPING, f"trainer.max_steps={best + 50}"
    )
    assert code == 0, stderr
    code, stderr = launch_in_process(f"hydra.run.dir={interrupted[0]}", interrupted[1], *EARLY_STOPPING)
    assert code == 0, stderr
    parts = json.loads((tmp_path / "parts" / "summary.json").read_text())
    assert parts["early_stopping"] == stopping and parts["test"] == whole["test"]

    # Started again, the stopped run is finished: nothing changes.
    summary = (tmp_path / "whole" / "summary.json").read_bytes()
    assert (
        launch_in_process(f"hydra.run.dir={tmp_path / 'whole'}", f"data.data_dir={data_dir}", *EARLY_STOPPING)[0] == 0
    )
    assert (tmp_path / "whole" / "summary.json").read_bytes() == summary


@pytest.mark.slow  # two launches, ~30 s
def test_a_second_launch_into_a_run_in_use_stops_at_once_touching_nothing(tmp_path, data_dir):
    command = _launch_command(tmp_path, data_dir, "trainer.max_steps=100000", "callbacks.checkpoint.every_steps=50")
    first = _start_and_wait_for_a_checkpoint(command, tmp_path)
    try:
        before = {path: (tmp_path / path).read_bytes() for path in (".hydra/config.yaml", ".hydra/overrides.yaml")}
        second = subprocess.run(
            [*command, "seed=1"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
        )
        assert second.returncode == 2
        assert second.stderr.strip().splitlines() == [
            f"jaxclf: error: {tmp_path} is in use by process {first.pid} on {socket.gethostname()} since "
            + re.search(r"since (\S+);", second.stderr).group(1)
            + "; wait for that run to end, or choose another hydra.run.dir"
        ]
        assert {path: (tmp_path / path).read_bytes() for path in before} == before
        assert first.poll() is None  # the first run goes on
    finally:
        first.send_signal(signal.SIGTERM)
        _, stderr = first.communicate(timeout=120)
    assert first.returncode == 128 + signal.SIGTERM, stderr[-2000:]


def test_default_run_directories_differ_within_a_second(compose):
    cfg = compose(return_hydra_config=True)
    assert re.fullmatch(r"outputs/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d-\d{6}", cfg.hydra.run.dir)
    assert re.fullmatch(r"multirun/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d-\d{6}", cfg.hydra.sweep.dir)


@pytest.mark.slow  # two sweeps of two jobs, ~50 s
def test_a_sweep_relaunched_with_more_steps_continues_its_jobs(tmp_path, data_dir):
    sweep = [
        sys.executable,
        str(ROOT / "launch.py"),
        "-m",
        f"hydra.sweep.dir={tmp_path}",
        f"data.data_dir={data_dir}",
        "seed=0,1",
        *TINY,
    ]
    first = subprocess.run(sweep, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert first.returncode == 0, first.stderr[-2000:]
    longer = subprocess.run(
        [*sweep, "trainer.max_steps=80"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert longer.returncode == 0, longer.stderr[-2000:]
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_dir()) == ["0_seed=0", "1_seed=1"]
    for job in ("0_seed=0", "1_seed=1"):
        assert json.loads((tmp_path / job / "summary.json").read_text())["steps"] == 80
        assert "Resuming from the checkpoint of step 60" in (tmp_path / job / "launch.log").read_text()


def test_a_truncated_summary_of_a_finished_run_is_written_again(tmp_path, finished_run, data_dir, caplog):
    caplog.set_level(logging.INFO)
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    original = json.loads((finished_run / "summary.json").read_text())
    (run_dir / "summary.json").write_text((finished_run / "summary.json").read_text()[:100])
    code, stderr = launch_in_process(f"hydra.run.dir={run_dir}", f"data.data_dir={data_dir}", *TINY)
    assert code == 0, stderr
    assert "summary.json is damaged" in caplog.text
    rewritten = json.loads((run_dir / "summary.json").read_text())
    assert rewritten["steps"] == 60 and rewritten["test"] == original["test"]  # the same state, tested again


def _damage_latest_meta(run_dir: Path) -> None:
    (run_dir / "checkpoints" / "60" / "meta" / "metadata").write_text('{"config": ')


@pytest.mark.slow  # a teacher restore and an evaluation, ~25 s
def test_a_damaged_meta_falls_back_in_evaluate_and_for_a_teacher(tmp_path, finished_run, data_dir, caplog):
    from jaxclf.restore import load_teacher, read_config

    caplog.set_level(logging.INFO)
    teacher = tmp_path / "teacher"
    shutil.copytree(finished_run, teacher)
    _damage_latest_meta(teacher)
    before = digest(teacher)
    load_teacher(str(teacher), read_config(str(finished_run))["data"])  # step 40's model
    assert digest(teacher) == before  # a teacher is only read
    assert "The checkpoint of step 60 is unreadable" in caplog.text and "left it in place" in caplog.text

    evaluated = tmp_path / "evaluated"
    shutil.copytree(finished_run, evaluated)
    _damage_latest_meta(evaluated)
    code, stderr = launch_in_process(f"hydra.run.dir={evaluated}", f"data.data_dir={data_dir}", "mode=evaluate")
    assert code == 0, stderr
    assert json.loads((evaluated / "evaluation.json").read_text())["steps"] == 40


@pytest.mark.slow  # two launches, ~35 s
def test_a_failed_save_ends_the_run_in_one_line_and_a_rerun_resumes(tmp_path, data_dir):
    command = _launch_command(tmp_path, data_dir, "trainer.max_steps=100000", "callbacks.checkpoint.every_steps=50")
    process = _start_and_wait_for_a_checkpoint(command, tmp_path)
    saved = checkpoint_steps(tmp_path)
    (tmp_path / "checkpoints").rename(tmp_path / "checkpoints.aside")
    (tmp_path / "checkpoints").write_text("a file in the way of the next save")
    _, stderr = process.communicate(timeout=60)  # seconds, not orbax's 300 s wait
    assert process.returncode == 4, stderr[-3000:]
    assert "Traceback" not in stderr
    [message] = [line for line in stderr.splitlines() if line.startswith("jaxclf: stopped:")]
    assert f"saving a checkpoint in {tmp_path / 'checkpoints'} failed (NotADirectoryError" in message
    assert "fix the cause and run the same command to resume" in message

    (tmp_path / "checkpoints").unlink()  # the fault fixed
    (tmp_path / "checkpoints.aside").rename(tmp_path / "checkpoints")
    rerun = subprocess.run(
        [*command[:-2], f"trainer.max_steps={max(saved) + 10}"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"Resuming from the checkpoint of step {max(checkpoint_steps(tmp_path)[:-1])}" in rerun.stdout


def test_a_file_in_place_of_checkpoints_is_refused_before_training(tmp_path, data_dir):
    (tmp_path / "checkpoints").write_text("not a directory")
    code, stderr = launch_in_process(f"hydra.run.dir={tmp_path}", f"data.data_dir={data_dir}", *TINY)
    assert code == 2
    assert f"{tmp_path / 'checkpoints'} is not a directory; move it away or choose another hydra.run.dir" in stderr


@pytest.fixture
def small_disk(tmp_path):
    """A 2.5 MB tmpfs: room for two of the default model's checkpoints (root only)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2500k", "tmpfs", str(mount_point)], check=False)
    if mounted.returncode != 0:
        pytest.skip("this machine does not allow mounting a tmpfs")
    yield mount_point
    subprocess.run(["umount", str(mount_point)], check=False)


@pytest.mark.slow  # two launches, ~30 s
def test_a_full_disk_ends_the_run_in_one_line_keeping_every_checkpoint(small_disk, data_dir):
    run_dir = small_disk / "run"
    command = _launch_command(run_dir, data_dir, "trainer.max_steps=100000", "callbacks.checkpoint.every_steps=20")
    full = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert full.returncode == 4, full.stderr[-3000:]
    assert "Traceback" not in full.stderr and "Logging error" not in full.stderr
    [message] = [line for line in full.stderr.splitlines() if line.startswith("jaxclf: stopped:")]
    assert f"saving a checkpoint in {run_dir / 'checkpoints'} failed" in message and "RESOURCE_EXHAUSTED" in message
    committed = checkpoint_steps(run_dir)
    before = digest(run_dir / "checkpoints" / str(committed[-1]))

    subprocess.run(["mount", "-o", "remount,size=50m", str(small_disk)], check=True)  # space freed
    longer = [*command[:-2], f"trainer.max_steps={committed[-1] + 20}"]
    resumed = subprocess.run(longer, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from the checkpoint of step {committed[-1]}" in resumed.stdout
    assert digest(run_dir / "checkpoints" / str(committed[-1])) == before


def test_a_checkpoint_deleted_while_being_read_is_not_damage(tmp_path, caplog):
    """A checkpoint that another store's retention deletes after this one
    listed it is no reason to set anything aside."""
    from jaxclf.checkpointing import CheckpointStore

    caplog.set_level(logging.INFO)
    store = CheckpointStore(str(tmp_path / "checkpoints"))
    for step in (1, 2):
        store.save(step, {"w": np.full(3, step, np.float32)}, {"step": step})
    store.wait_until_finished()
    reader = CheckpointStore(str(tmp_path / "checkpoints"))
    shutil.rmtree(tmp_path / "checkpoints" / "2")  # gone after the reader listed it
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = {"w": jax.ShapeDtypeStruct((3,), np.float32, sharding=sharding)}
    state, meta = reader.restore_latest_good(abstract)
    assert meta == {"step": 1} and np.array_equal(state["w"], np.ones(3))
    assert not (tmp_path / "checkpoints_quarantine").exists()
    assert "The checkpoint of step 2 was removed while being read" in caplog.text
    store.close()
    reader.close()


def _read_only_view(source: Path, view: Path):
    """``source`` seen through a read-only bind mount at ``view`` (root only:
    EROFS binds root too, where file permissions do not); unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root (root ignores file permissions)")
    view.mkdir()
    if subprocess.run(["mount", "--bind", str(source), str(view)], check=False).returncode != 0:
        pytest.skip("this machine does not allow bind mounts")
    subprocess.run(["mount", "-o", "remount,ro,bind", str(view)], check=True)
    yield view
    subprocess.run(["umount", str(view)], check=False)


@pytest.fixture
def read_only_run(tmp_path, finished_run):
    """A copy of the finished run behind a read-only bind mount."""
    shutil.copytree(finished_run, tmp_path / "copy")
    yield from _read_only_view(tmp_path / "copy", tmp_path / "read_only")


@pytest.fixture
def read_only_data_dir(tmp_path):
    """An empty TFDS data dir behind a read-only bind mount."""
    (tmp_path / "empty").mkdir()
    yield from _read_only_view(tmp_path / "empty", tmp_path / "read_only_data")


def test_preparing_into_a_read_only_data_dir_is_one_line(read_only_data_dir, tmp_path):
    code, stderr = launch_in_process(f"hydra.run.dir={tmp_path / 'run'}", f"data.data_dir={read_only_data_dir}", *TINY)
    assert code == 2 and "Traceback" not in stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("jaxclf: error:")]
    assert line == (
        f"jaxclf: error: data.data_dir={read_only_data_dir}: digits/classes cannot be prepared there "
        f"(Read-only file system: {read_only_data_dir / 'digits'}); choose a writable data.data_dir"
    )


def _flip_bytes(folder: Path, pattern: str) -> None:
    [path] = folder.glob(pattern)
    data = bytearray(path.read_bytes())
    data[2000:2100] = bytes(byte ^ 0xFF for byte in data[2000:2100])  # past the header: a record chunk
    path.write_bytes(data)


def _truncate(folder: Path, pattern: str) -> None:
    [path] = folder.glob(pattern)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize(
    "damage,pattern,reason",
    [
        (_flip_bytes, "digits-train.array_record-*", "Corrupted Riegeli/records file"),
        (_truncate, "dataset_info.json", "Failed to load JSON"),
    ],
    ids=["a corrupt record file", "a truncated dataset_info.json"],
)
@pytest.mark.parametrize("in_memory", [True, False])
def test_a_damaged_prepared_dataset_is_one_line(tmp_path, data_dir, damage, pattern, reason, in_memory):
    damaged = tmp_path / "tfds"
    shutil.copytree(data_dir, damaged)
    version = damaged / "digits" / "classes" / "1.0.0"
    damage(version, pattern)
    code, stderr = launch_in_process(
        f"hydra.run.dir={tmp_path / 'run'}", f"data.data_dir={damaged}", f"data.in_memory={in_memory}", *TINY
    )
    assert code == 2 and "Traceback" not in stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("jaxclf: error:")]
    folder = version if pattern.startswith("digits-") else version.parent
    assert line.startswith(
        f"jaxclf: error: data.name=digits/classes: the prepared files in {folder} do not read back ("
    )
    assert reason in line and line.endswith(f"; delete {folder} and prepare it again")


def test_a_run_dir_under_a_regular_file_is_one_line(tmp_path, data_dir):
    (tmp_path / "file").write_text("")
    code, stderr = launch_in_process(f"hydra.run.dir={tmp_path / 'file' / 'run'}", f"data.data_dir={data_dir}", *TINY)
    assert code == 2
    assert stderr.strip().splitlines() == [
        f"jaxclf: error: {tmp_path / 'file' / 'run'} is under {tmp_path / 'file'}, which is not a directory; "
        "choose another hydra.run.dir"
    ]


def test_ctrl_c_during_the_final_test_is_one_line_and_the_same_command_finishes(tmp_path, data_dir):
    interrupt = (
        "+callbacks.interrupt._target_=conftest.SignalAtStep",
        "+callbacks.interrupt.phase=fit_end",
        f"+callbacks.interrupt.signal_number={int(signal.SIGINT)}",
    )
    command = (f"hydra.run.dir={tmp_path}", f"data.data_dir={data_dir}", *TINY)
    code, stderr = launch_in_process(*command, *interrupt)
    assert code == 130 and "Traceback" not in stderr
    [line] = [line for line in stderr.splitlines() if line.startswith("jaxclf:")]
    assert line == (
        "jaxclf: stopped: interrupted (SIGINT); every checkpoint committed so far is kept; "
        "run the same command again to resume"
    )
    assert checkpoint_steps(tmp_path)[-1] == 60 and not (tmp_path / "summary.json").exists()
    code, stderr = launch_in_process(*command)
    assert code == 0, stderr
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 60


def test_ctrl_c_during_predict_is_one_line_and_writes_nothing(tmp_path, finished_run, data_dir, monkeypatch):
    from jaxclf.predict import Predictor

    def interrupted(self, state, split):
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(Predictor, "__call__", interrupted)
    code, stderr = launch_in_process(
        "mode=predict", f"evaluation.run_dir={finished_run}", f"hydra.run.dir={tmp_path}", f"data.data_dir={data_dir}"
    )
    assert code == 130 and "Traceback" not in stderr
    assert [line for line in stderr.splitlines() if line.startswith("jaxclf:")] == [
        "jaxclf: stopped: interrupted (SIGINT); every checkpoint committed so far is kept; "
        "run the same command again to resume"
    ]
    assert not list(tmp_path.glob("predictions.csv*"))


@pytest.mark.slow  # an evaluation and a refused launch, ~35 s
def test_a_read_only_finished_run_can_be_evaluated_and_teach(read_only_run, finished_run, tmp_path, data_dir):
    from jaxclf.restore import load_teacher, read_config

    with pytest.raises(OSError, match="Read-only file system"):
        (read_only_run / "probe").write_text("")
    elsewhere = tmp_path / "evaluation"
    evaluate = ("mode=evaluate", f"evaluation.run_dir={read_only_run}")
    code, stderr = launch_in_process(f"hydra.run.dir={elsewhere}", f"data.data_dir={data_dir}", *evaluate)
    assert code == 0, stderr
    evaluation = json.loads((elsewhere / "evaluation.json").read_text())
    assert evaluation["steps"] == 60
    assert evaluation["test"] == json.loads((finished_run / "summary.json").read_text())["test"]
    load_teacher(str(read_only_run), read_config(str(finished_run))["data"])

    # Training into it stops with one line before Hydra opens its log file there.
    refused = subprocess.run(
        _launch_command(read_only_run, data_dir), cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"jaxclf: error: {read_only_run} is not writable; make it writable or choose another hydra.run.dir "
        "(mode=evaluate evaluation.run_dir=... re-tests a run it cannot write to)"
    ]


def test_a_truncated_json_file_reads_as_absent_with_a_warning(tmp_path, caplog):
    """What the report, the sweep results and a rerun read: a damaged summary is an unfinished job."""
    from jaxclf.run_dir import read_json

    (tmp_path / "summary.json").write_text('{"test": {"accuracy": 0.9')
    assert read_json(str(tmp_path / "summary.json")) is None
    assert f"{tmp_path / 'summary.json'} is damaged" in caplog.text
    assert read_json(str(tmp_path / "absent.json")) is None
