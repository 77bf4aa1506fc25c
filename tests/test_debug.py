"""Lightning's everyday switches: the debug group and trainer.max_time."""

from __future__ import annotations

import json

import pytest

from conftest import TINY, checkpoint_steps, launch_in_process
from jaxclf.config.schema import parse_duration
from jaxclf.errors import ConfigError


def summary_of(run_dir) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("1.5", 1.5), ("02:30", 150), ("01:00:00", 3600), ("00:12:00:00", 12 * 3600), ("1:00:00:01", 86401)],
)
def test_max_time_reads_seconds_or_a_clock(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "-5", "soon", "1:2:3:4:5", "inf"])
def test_a_bad_max_time_names_itself(text):
    with pytest.raises(ConfigError, match=f"trainer.max_time={text} is not valid"):
        parse_duration(text)


@pytest.mark.slow  # ~9 s on 2 cores
def test_max_time_stops_with_a_checkpoint_and_the_same_command_continues(tmp_path, data_dir):
    command = (f"hydra.run.dir={tmp_path}", f"data.data_dir={data_dir}", *TINY, "trainer.steps_per_call=5")
    code, stderr = launch_in_process(*command, "trainer.max_time=0.001")
    assert code == 0, stderr
    stopped = summary_of(tmp_path)
    assert stopped["steps"] == 5 and "test" in stopped  # out of time after the first call, then tested
    assert checkpoint_steps(tmp_path)[-1] == 5
    code, stderr = launch_in_process(*command)
    assert code == 0, stderr
    assert summary_of(tmp_path)["steps"] == 60


def test_fast_dev_run_runs_each_phase_on_one_batch_and_keeps_no_checkpoint(tmp_path, data_dir):
    code, stderr = launch_in_process(f"hydra.run.dir={tmp_path}", f"data.data_dir={data_dir}", "debug=fast_dev_run")
    assert code == 0, stderr
    summary = summary_of(tmp_path)
    assert summary["steps"] == 2
    assert summary["validation"]["num_examples"] == summary["test"]["num_examples"] == 128
    assert checkpoint_steps(tmp_path) == [] and not list(tmp_path.glob("events.out.tfevents.*"))


def test_overfit_batches_learns_its_one_batch_by_heart(tmp_path, data_dir):
    code, stderr = launch_in_process(f"hydra.run.dir={tmp_path}", f"data.data_dir={data_dir}", "debug=overfit_batches")
    assert code == 0, stderr
    train = summary_of(tmp_path)["train"]
    assert train["num_examples"] == 128 and train["accuracy"] == 1.0


def test_limit_batches_evaluates_one_batch_of_each_split(tmp_path, data_dir):
    code, stderr = launch_in_process(
        f"hydra.run.dir={tmp_path}", f"data.data_dir={data_dir}", "debug=limit_batches", "data.batch_size=32"
    )
    assert code == 0, stderr
    summary = summary_of(tmp_path)
    assert summary["steps"] == 20
    assert {summary[split]["num_examples"] for split in ("train", "validation", "test")} == {32}


@pytest.mark.slow  # a traced run, ~10 s
def test_profile_writes_a_trace_where_tensorboard_looks(tmp_path, data_dir):
    code, stderr = launch_in_process(f"hydra.run.dir={tmp_path}", f"data.data_dir={data_dir}", "debug=profile")
    assert code == 0, stderr
    [trace] = tmp_path.glob("plugins/profile/*/*.xplane.pb")  # TensorBoard's profile plugin reads these
    assert trace.stat().st_size > 0
