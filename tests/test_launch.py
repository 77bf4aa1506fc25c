"""End to end: ``python launch.py`` as a subprocess, read back as a user would."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
from tensorboard.util import tensor_util

from conftest import EVERY_OUTPUT, TINY, checkpoint_steps, digest, launch_in_process, run_launch, tensorboard_scalars


def _images(run_dir: Path) -> dict[str, dict[int, tuple[int, int]]]:
    """Image summaries per tag: step -> (height, width) of the decoded PNG."""
    import io

    from PIL import Image

    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(run_dir))
    multiplexer.Reload()
    images: dict[str, dict[int, tuple[int, int]]] = {}
    for run, tags in multiplexer.Runs().items():
        for tag in tags["tensors"]:
            for event in multiplexer.Tensors(run, tag):
                value = tensor_util.make_ndarray(event.tensor_proto)
                if value.dtype.kind in "SO" and value.ndim == 1 and len(value) == 3:  # [width, height, png]
                    png = Image.open(io.BytesIO(value[2]))
                    images.setdefault(tag, {})[event.step] = png.size[::-1]
    return images


def _texts(run_dir: Path) -> dict[str, str]:
    """Text summaries per tag (their first value), via TensorBoard's reader."""
    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(run_dir))
    multiplexer.Reload()
    texts = {}
    for run, tags in multiplexer.Runs().items():
        for tag in tags["tensors"]:
            event = multiplexer.Tensors(run, tag)[0]
            if multiplexer.SummaryMetadata(run, tag).plugin_data.plugin_name == "text":
                texts[tag] = tensor_util.make_ndarray(event.tensor_proto).item().decode()
    return texts


def test_per_class_accuracy_agrees_with_the_predictions_of_the_same_checkpoint(finished_run, data_dir, tmp_path):
    code, stderr = launch_in_process(
        "mode=predict", f"evaluation.run_dir={finished_run}", f"hydra.run.dir={tmp_path}", f"data.data_dir={data_dir}"
    )
    assert code == 0, stderr
    with open(tmp_path / "predictions.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    labels = np.array([int(row["label"]) for row in rows])
    predicted = np.array([int(row["predicted"]) for row in rows])
    scalars = tensorboard_scalars(finished_run)
    for label in range(10):
        expected = np.mean(predicted[labels == label] == label)
        assert dict(scalars[f"test_by_class/accuracy_{label}"])[60] == pytest.approx(expected)


def test_top5_accuracy_is_reported_above_the_configured_number_of_classes(tmp_path, data_dir):
    code, stderr = launch_in_process(
        f"hydra.run.dir={tmp_path}", f"data.data_dir={data_dir}", *TINY, "evaluation.top5_min_classes=5"
    )
    assert code == 0, stderr
    assert "top5_accuracy" in json.loads((tmp_path / "summary.json").read_text())["test"]


def test_tensorboards_text_tab_names_the_run_by_its_overrides_and_shows_its_config_and_parameters(
    finished_run, data_dir
):
    texts = _texts(finished_run)
    overrides = " ".join([f"data.data_dir={data_dir}", *TINY, *EVERY_OUTPUT])
    assert texts["run/overrides"] == f"`{overrides}`"  # Hydra's own keys left out
    config = yaml.safe_load("\n".join(line[4:] for line in texts["run/config"].splitlines()))
    assert config["trainer"]["max_steps"] == 60 and config["model"]["hidden_sizes"] == [256, 256]
    parameters = texts["run/parameters"]
    assert "(64, 256)" in parameters and "Total: 85,002" in parameters


def test_fit_writes_summary_checkpoints_and_tensorboard_scalars(finished_run):
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["steps"] == 60 and summary["num_params"] == 64 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10
    assert summary["wall_time_s"] > 0
    for split, size in (("validation", 200), ("test", 297)):
        assert set(summary[split]) >= {"accuracy", "loss", "nll", "ece", "brier"}
        assert "top5_accuracy" not in summary[split]  # about 1.0 with 10 classes: left out
        assert summary[split]["nll"] == summary[split]["loss"]
        assert 0 <= summary[split]["ece"] < 0.2 and 0 <= summary[split]["brier"] < 0.5
        assert summary[split]["num_examples"] == size
        assert summary[split]["accuracy"] > 0.85  # 60 steps of the default MLP
    assert checkpoint_steps(finished_run) == [20, 40, 60]
    assert (finished_run / ".hydra" / "config.yaml").exists()

    scalars = tensorboard_scalars(finished_run)
    for tag in ("train/loss", "train/accuracy", "train/learning_rate", "train/steps_per_sec", "train/grad_norm"):
        assert [step for step, _ in scalars[tag]] == [20, 40, 60], tag
    assert [step for step, _ in scalars["eval/accuracy"]] == [20, 40, 60]
    for tag in ("eval/loss", "eval/nll", "eval/ece", "eval/brier", "eval_by_class/accuracy_3"):
        assert [step for step, _ in scalars[tag]] == [20, 40, 60], tag
    assert dict(scalars["test/ece"])[60] == pytest.approx(summary["test"]["ece"])
    images = _images(finished_run)
    assert set(images["eval/reliability_diagram"]) == {20, 40, 60}
    assert set(images["test/reliability_diagram"]) == {60}
    assert set(images["eval/confusion_matrix"]) == {20, 40, 60} and set(images["test/confusion_matrix"]) == {60}
    assert set(images["test/mistakes"]) == {60}
    final_eval = dict(scalars["eval/accuracy"])[60]
    assert final_eval == pytest.approx(summary["validation"]["accuracy"])
    assert dict(scalars["test/accuracy"])[60] == pytest.approx(summary["test"]["accuracy"])
    losses = [value for _, value in scalars["train/loss"]]
    assert losses[-1] < losses[0]  # it learns
    assert all(value > 0 for _, value in scalars["train/steps_per_sec"])


def test_evaluate_mode_reproduces_the_test_accuracy(finished_run, data_dir):
    before = digest(finished_run / "checkpoints")
    saved_config = (finished_run / ".hydra" / "config.yaml").read_bytes()
    result = run_launch("mode=evaluate", f"hydra.run.dir={finished_run}", f"data.data_dir={data_dir}")
    assert result.returncode == 0, result.stderr
    summary = json.loads((finished_run / "summary.json").read_text())
    evaluation = json.loads((finished_run / "evaluation.json").read_text())
    assert evaluation["steps"] == 60
    assert evaluation["test"]["accuracy"] == summary["test"]["accuracy"]
    assert evaluation["test"]["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-6)
    assert digest(finished_run / "checkpoints") == before
    assert (finished_run / ".hydra" / "config.yaml").read_bytes() == saved_config


def test_evaluate_mode_reads_a_run_saved_by_an_older_version(finished_run, data_dir, tmp_path):
    """Only the saved model, optimizer and data matter; a data key the run predates gets its default."""
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    meta = run_dir / "checkpoints" / "60" / "meta" / "metadata"
    saved = json.loads(meta.read_text())
    del saved["config"]["data"]["workers"]  # added after this run, say
    del saved["config"]["callbacks"], saved["config"]["evaluation"]
    saved["config"]["trainer"].update(eval_every_steps=20, early_stopping={"metric": None}, callbacks={})
    saved["config"]["loss"] = {"_target_": "jaxclf.objectives.SoftmaxCrossEntropy", "label_smoothing": 0.0}
    meta.write_text(json.dumps(saved))
    code, stderr = launch_in_process("mode=evaluate", f"hydra.run.dir={run_dir}", f"data.data_dir={data_dir}")
    assert code == 0, stderr
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert evaluation["train"]["num_examples"] == 1300  # evaluation.train_examples' default, 10,000, covers all of them
    assert evaluation["test"]["accuracy"] == json.loads((run_dir / "summary.json").read_text())["test"]["accuracy"]


def test_rerunning_a_finished_run_changes_nothing(finished_run, data_dir):
    before = digest(finished_run / "checkpoints")
    summary = (finished_run / "summary.json").read_bytes()
    event_files = len(list(finished_run.glob("events.out.tfevents.*")))
    result = run_launch(f"hydra.run.dir={finished_run}", f"data.data_dir={data_dir}", *TINY)
    assert result.returncode == 0, result.stderr
    assert "already finished" in result.stderr + result.stdout
    assert (finished_run / "summary.json").read_bytes() == summary
    assert digest(finished_run / "checkpoints") == before
    assert len(list(finished_run.glob("events.out.tfevents.*"))) == event_files


def test_resume_false_refuses_to_touch_an_existing_run(finished_run, data_dir):
    before = digest(finished_run / "checkpoints")
    summary = (finished_run / "summary.json").read_bytes()
    result = run_launch(f"hydra.run.dir={finished_run}", f"data.data_dir={data_dir}", "trainer.resume=false", *TINY)
    assert result.returncode == 2
    assert "trainer.resume=false but" in result.stderr and "latest step 60" in result.stderr
    assert digest(finished_run / "checkpoints") == before
    assert (finished_run / "summary.json").read_bytes() == summary


@pytest.mark.slow  # ~15 s on 2 cores
def test_two_devices_shard_the_batch(tmp_path, data_dir):
    two_cpus = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    result = run_launch(
        f"hydra.run.dir={tmp_path / 'ok'}",
        f"data.data_dir={data_dir}",
        "data.batch_size=64",
        "data.eval_batch_size=46",  # divides neither 200 nor 297
        *TINY,
        env_extra=two_cpus,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "ok" / "summary.json").read_text())
    assert summary["validation"]["num_examples"] == 200 and summary["test"]["num_examples"] == 297

    result = run_launch(
        f"hydra.run.dir={tmp_path / 'odd'}",
        f"data.data_dir={data_dir}",
        "data.batch_size=63",
        *TINY,
        env_extra=two_cpus,
    )
    assert result.returncode == 2
    assert "data.batch_size=63 is not valid; it must be a positive multiple of the device count (2)" in result.stderr


def test_binary_digits_with_a_single_logit(tmp_path, data_dir):
    result = run_launch(f"hydra.run.dir={tmp_path}", f"data.data_dir={data_dir}", "experiment=binary_digits", *TINY)
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_params"] == 64 * 256 + 256 + 256 * 256 + 256 + 256 * 1 + 1  # one logit
    for split in ("validation", "test"):
        assert "top5_accuracy" not in summary[split]  # two classes
        assert summary[split]["accuracy"] > 0.85 and summary[split]["ece"] < 0.2


def test_distillation_from_a_finished_run(tmp_path, finished_run, data_dir):
    teacher_files = digest(finished_run / "checkpoints")
    result = run_launch(
        f"hydra.run.dir={tmp_path}",
        f"data.data_dir={data_dir}",
        "loss=distill",
        f"loss.teacher={finished_run}",
        "model=linear",
        "optim.learning_rate=0.05",
        *TINY,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["num_params"] == 64 * 10 + 10  # the student is linear
    assert summary["test"]["accuracy"] > 0.85
    assert digest(finished_run / "checkpoints") == teacher_files  # the teacher is only read


@pytest.mark.parametrize(
    "key,value",
    [("name", "digits/parity"), ("num_classes", 2), ("image_shape", [16, 16, 1]), ("mean", [0.0]), ("std", [1.0])],
)
def test_a_teacher_of_other_data_is_refused(finished_run, key, value):
    from jaxclf.errors import ConfigError
    from jaxclf.restore import load_teacher, read_config

    data = read_config(str(finished_run))["data"]
    load_teacher(str(finished_run), data)  # the same data: accepted
    with pytest.raises(ConfigError, match=f"was trained with data.{key}=.*; this run has data.{key}="):
        load_teacher(str(finished_run), {**data, key: value})


@pytest.mark.slow
def test_an_imagenet_sized_vit_trains_on_synthetic_data(tmp_path):
    result = run_launch(
        f"hydra.run.dir={tmp_path}",
        "data=synthetic",
        "model=vit_ti16",
        "trainer.max_steps=2",
        "trainer.steps_per_call=1",
        "callbacks.progress_bar=null",
        "callbacks.tensorboard.images=false",
        "data.batch_size=2",
        "data.synthetic_examples.train=8",
        "data.synthetic_examples.validation=4",
        "data.synthetic_examples.test=4",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["num_params"] == 5_717_416
    assert summary["test"]["loss"] > 0


def test_describe_prints_parameters_and_flops_without_data_or_a_run_directory(tmp_path):
    empty = tmp_path / "no_data"
    empty.mkdir()
    result = run_launch(
        f"hydra.run.dir={tmp_path / 'run'}",
        "model=vit_s16",
        "data=imagenet2012",
        "~recipe",  # timm's ViT-S/16, not big_vision's recipe
        "mode=describe",
        f"data.data_dir={empty}",
    )
    assert result.returncode == 0, result.stderr
    assert "Total: 22,050,664" in result.stdout and "backbone/block_11/mlp/fc2/kernel" in result.stdout
    # ViT-S/16 at 224: 4.6 GMACs per image (timm) -> 9.2 GFLOPs.
    gflops = float(result.stdout.split("parameters; ")[1].split(" GFLOPs")[0])
    assert 9.0 < gflops < 9.5
    assert not any(empty.iterdir())  # nothing read or prepared
    assert not (tmp_path / "run").exists()  # and no run directory left behind


@pytest.mark.slow  # ~17 s on 2 cores
def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path, data_dir):
    result = run_launch(
        "-m", f"hydra.sweep.dir={tmp_path}", f"data.data_dir={data_dir}", "optim.learning_rate=-1,0.003", *TINY
    )
    assert result.returncode == 1  # Hydra reports the failed job once the sweep is done
    failed, finished = sorted(tmp_path.glob("[01]_*"))
    # Named by the swept key alone: TINY's keys may change on resume.
    assert (failed.name, finished.name) == ("0_optim.learning_rate=-1", "1_optim.learning_rate=0.003")
    failure = json.loads((failed / "failure.json").read_text())
    assert failure["error"] == "ConfigError"
    assert failure["message"] == "optim.learning_rate=-1.0 is not valid; it must be positive and finite"
    assert "jaxclf: error: optim.learning_rate=-1.0" in result.stderr
    summary = json.loads((finished / "summary.json").read_text())
    assert summary["steps"] == 60 and not (failed / "summary.json").exists()

    report = subprocess.run(
        [sys.executable, "-m", "jaxclf.studies.report", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert report.returncode == 0, report.stderr
    text = (tmp_path / "report.md").read_text()
    assert "2 jobs in 2 settings: 1 finished, 1 failed, 0 unfinished" in text
    assert (
        f"| `{failed.name}` | ConfigError: optim.learning_rate=-1.0 is not valid; it must be positive and finite |"
        in text
    )
