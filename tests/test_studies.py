"""Multirun studies end to end: presets, per-job records, the teacher trained
once per sweep, the report, and the sweeper/launcher plugins."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import TINY, run_launch, tensorboard_scalars
from jaxclf.restore import read_config

TEACHER = 'hydra.callbacks.teacher.overrides=["trainer.max_steps=40","callbacks.progress_bar=null"]'


@pytest.fixture(scope="module")
def study(tmp_path_factory, data_dir) -> Path:
    """``experiment=soft_vs_hard`` cut to 2 settings x 2 seeds and TINY budgets."""
    sweep_dir = tmp_path_factory.mktemp("study")
    result = run_launch(
        "-m", "experiment=soft_vs_hard", "labels=hard,distill", "seed=0,1", TEACHER,
        f"hydra.sweep.dir={sweep_dir}", f"data.data_dir={data_dir}", *TINY,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return sweep_dir


def job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted(
        (path for path in sweep_dir.iterdir() if (path / ".hydra").is_dir()),
        key=lambda path: int(path.name.split("_")[0]),
    )


def test_a_sweep_lays_out_one_named_directory_per_job_with_its_records(study):
    jobs = job_dirs(study)
    # Named by number and overrides, sorted by key; paths and TINY's keys (which may change on resume) left out.
    settings = [("hard", 0), ("hard", 1), ("distill", 0), ("distill", 1)]
    assert [job.name for job in jobs] == [
        f"{number}_labels={labels},seed={seed}" for number, (labels, seed) in enumerate(settings)
    ]
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        assert summary["steps"] == 60
        assert summary["hparams"]["seed"] == int(job.name.split("seed=")[1][0])
        assert summary["hparams"]["loss._target_"] == (
            "jaxclf.objectives.Distillation" if "distill" in job.name else "jaxclf.objectives.Objective"
        )
        gap = summary["train"]["accuracy"] - summary["validation"]["accuracy"]
        assert summary["train_minus_validation_accuracy"] == pytest.approx(gap)
        assert summary["train"]["num_examples"] == 1300  # every training digit, as evaluation.train_examples allows
        scalars = tensorboard_scalars(job)
        assert scalars["gap/train_minus_validation_accuracy"] == [(60, pytest.approx(gap))]
        assert scalars["test/accuracy"] == [(60, pytest.approx(summary["test"]["accuracy"]))]


def tensorboard_post(logdir: Path, route: str, request: dict) -> dict:
    """Asks TensorBoard itself (its WSGI app with every default plugin, reading ``logdir``)."""
    from tensorboard import default, program
    from tensorboard.backend import application
    from tensorboard.backend.event_processing import data_ingester
    from werkzeug.test import Client

    board = program.TensorBoard(plugins=default.get_plugins())
    board.configure(
        argv=[None, "--logdir", str(logdir), "--load_fast=false", "--reload_task=blocking", "--reload_interval=0"]
    )
    ingester = data_ingester.LocalDataIngester(board.flags)
    ingester.start()
    app = application.TensorBoardWSGIApp(
        board.flags,
        board.plugin_loaders,
        ingester.data_provider,
        board.assets_zip_provider,
        ingester.deprecated_multiplexer,
    )
    response = Client(app).post(route, json=request, headers={"X-XSRF-Protected": "1"})
    assert response.status_code == 200, response.data
    return json.loads(response.data)


def test_tensorboards_hparams_tab_compares_the_jobs_by_the_swept_keys_and_chosen_metrics(study):
    experiment = tensorboard_post(study, "/data/plugin/hparams/experiment", {"experimentName": ""})
    assert [info["name"] for info in experiment["hparamInfos"]] == ["labels", "seed"]
    assert [info["name"]["tag"] for info in experiment["metricInfos"]] == [
        *("test/accuracy", "test/nll", "test/ece", "eval/accuracy", "gap/train_minus_validation_accuracy")
    ]
    request = {
        "experimentName": "",
        "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
        "colParams": [{"hparam": "seed"}, {"metric": {"tag": "test/accuracy", "group": ""}}],
        "startIndex": 0,
        "sliceSize": 100,
    }
    groups = tensorboard_post(study, "/data/plugin/hparams/session_groups", request)["sessionGroups"]
    sessions = {session["name"]: session for group in groups for session in group["sessions"]}
    jobs = job_dirs(study)
    # Each row is named after its job's directory; the teacher is a row of its own, named so.
    assert sorted(group["name"] for group in groups) == sorted([job.name for job in jobs] + ["teacher"])
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        [group] = [group for group in groups if group["name"] == job.name]
        assert group["hparams"]["seed"] == summary["hparams"]["seed"]
        assert group["hparams"]["labels"] == job.name.split("labels=")[1].split(",")[0]
        metrics = {value["name"]["tag"]: value["value"] for value in sessions[job.name]["metricValues"]}
        assert metrics["test/accuracy"] == pytest.approx(summary["test"]["accuracy"])
        assert metrics["test/ece"] == pytest.approx(summary["test"]["ece"])
        assert metrics["gap/train_minus_validation_accuracy"] == pytest.approx(
            summary["train_minus_validation_accuracy"]
        )


def test_the_teacher_is_trained_once_before_the_jobs_that_distil_from_it(study):
    teacher = json.loads((study / "teacher" / "summary.json").read_text())
    # Its own model, and the command line's trainer.max_steps=60 over its own 40.
    assert teacher["steps"] == 60 and teacher["hparams"]["model.hidden_sizes"] == "[256, 256]"
    for job in job_dirs(study):
        config = read_config(str(job))  # resolved, as the job ran
        assert config["model"]["hidden_sizes"] == [32]
        if "distill" in job.name:
            assert Path(config["loss"]["teacher"]).resolve() == (study / "teacher").resolve()


@pytest.mark.slow  # ~9 s on 2 cores
def test_the_report_tabulates_mean_and_std_over_seeds_and_draws_the_plots(study, tmp_path):
    report = subprocess.run(
        [
            Path(sys.executable).parent / "jaxclf-report",
            str(study),
            "--output",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert report.returncode == 0, report.stderr
    assert report.stdout.strip() == str(tmp_path / "report.md")
    text = (tmp_path / "report.md").read_text()
    rows = {
        line.split(" | ")[0].strip("| `"): line.split(" | ") for line in text.splitlines() if line.startswith("| `")
    }
    assert list(rows) == ["labels=hard", "labels=distill"]

    def summaries(setting: str) -> list[dict]:
        return [json.loads((job / "summary.json").read_text()) for job in job_dirs(study) if f"_{setting}," in job.name]

    for setting, cells in rows.items():
        accuracy = np.array([summary["test"]["accuracy"] for summary in summaries(setting)]) * 100
        gap = np.array([summary["train_minus_validation_accuracy"] for summary in summaries(setting)]) * 100
        assert cells[1] == "2/2"
        assert cells[2] == f"{accuracy.mean():.1f} ± {accuracy.std(ddof=1):.1f}%"
        assert cells[5] == f"{gap.mean():.1f} ± {gap.std(ddof=1):.1f} pp"
    hard = np.mean([summary["test"]["accuracy"] for summary in summaries("labels=hard")]) * 100
    distill = np.mean([summary["test"]["accuracy"] for summary in summaries("labels=distill")]) * 100
    assert rows["labels=hard"][6] == "baseline" and rows["labels=distill"][6] == f"{distill - hard:+.1f} pp"
    assert re.search(r"Teacher \(`teacher/`\): test accuracy \d+\.\d\d%", text)
    for plot, minimum_width in (("curves.png", 400), ("accuracy_vs_ece.png", 400)):
        with Image.open(tmp_path / plot) as image:
            assert image.format == "PNG" and image.width >= minimum_width
        assert f"]({plot})" in text


def test_the_report_runs_as_a_module_and_refuses_what_is_not_a_sweep(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "jaxclf.studies.report", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith(f"jaxclf-report: error: '{tmp_path}' holds no Hydra jobs")


@pytest.mark.slow  # a sweep of fresh processes, ~25 s
def test_optuna_searches_learning_rate_and_weight_decay_for_validation_accuracy(tmp_path, data_dir):
    sweep = ("-m", "experiment=search_lr_wd", "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={tmp_path}")
    result = run_launch(*sweep, f"data.data_dir={data_dir}", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())
    trials = [json.loads((job / "summary.json").read_text()) for job in job_dirs(tmp_path)]
    assert len(trials) == 2
    assert best["best_value"] == pytest.approx(max(trial["validation"]["accuracy"] for trial in trials))
    chosen = next(trial for trial in trials if trial["validation"]["accuracy"] == pytest.approx(best["best_value"]))
    assert best["best_params"]["optim.learning_rate"] == pytest.approx(chosen["hparams"]["optim.learning_rate"])
    assert best["best_params"]["optim.weight_decay"] == pytest.approx(chosen["hparams"]["optim.weight_decay"])


@pytest.mark.slow  # a sweep of fresh processes, ~25 s
def test_joblib_runs_the_jobs_in_parallel_processes(tmp_path, data_dir):
    sweep = ("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "seed=0,1", f"hydra.sweep.dir={tmp_path}")
    result = run_launch(*sweep, f"data.data_dir={data_dir}", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in result.stderr + result.stdout
    summaries = [json.loads((job / "summary.json").read_text()) for job in job_dirs(tmp_path)]
    assert [summary["hparams"]["seed"] for summary in summaries] == [0, 1]
    assert all(summary["steps"] == 60 for summary in summaries)


def test_the_slurm_launcher_example_composes(compose):
    from hydra.utils import instantiate

    cfg = compose(["hydra/launcher=slurm", "hardware=gpu_single"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert launcher.gpus_per_node == 1 and launcher.max_num_timeout == 3
    assert "export XLA_PYTHON_CLIENT_PREALLOCATE=false" in launcher.setup
    assert type(instantiate(launcher)).__name__ == "SlurmLauncher"


def test_a_setting_with_one_seed_shows_its_value_without_a_spread():
    from jaxclf.studies.report import mean_std

    assert mean_std(np.array([0.9812]), 100.0, "%") == "98.1%"
    assert mean_std(np.array([0.98, 0.96]), 100.0, "%") == f"97.0 ± {np.std([98, 96], ddof=1):.1f}%"
