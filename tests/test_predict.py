"""``mode=predict``: predictions.csv for a split or image files, from a finished run."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
from PIL import Image

from conftest import launch_in_process
from jaxclf.data.source import open_builder, open_source


def read_predictions(run_dir) -> list[dict[str, str]]:
    with open(run_dir / "predictions.csv", newline="") as file:
        return list(csv.DictReader(file))


def test_predictions_of_the_test_split_agree_with_the_summary_s_test_accuracy(tmp_path, finished_run, data_dir):
    code, stderr = launch_in_process(
        "mode=predict",
        f"evaluation.run_dir={finished_run}",  # only read
        f"hydra.run.dir={tmp_path}",
        f"data.data_dir={data_dir}",
        "predict.top_k=3",
    )
    assert code == 0, stderr
    rows = read_predictions(tmp_path)
    test = json.loads((finished_run / "summary.json").read_text())["test"]
    assert len(rows) == test["num_examples"] and rows[0]["input"] == "test/0"
    correct = sum(row["label"] == row["predicted"] for row in rows)
    assert abs(correct / len(rows) - test["accuracy"]) < 1e-6  # the same examples, the same argmax
    assert list(rows[0]) == [
        *("input", "label", "predicted", "probability"),
        *("top1", "top1_probability", "top2", "top2_probability", "top3", "top3_probability"),
    ]
    for row in rows[:20]:
        ranked = [float(row[f"top{rank}_probability"]) for rank in (1, 2, 3)]
        assert ranked == sorted(ranked, reverse=True) and sum(ranked) <= 1 + 1e-5
        assert row["predicted"] == row["top1"] and row["probability"] == row["top1_probability"]


def test_image_files_are_predicted_as_their_split_twins_and_bad_ones_are_named_and_left_out(
    tmp_path, finished_run, data_dir, caplog
):
    caplog.set_level(logging.WARNING)
    builder = open_builder("digits/classes", data_dir=data_dir, manual_dir=None, builder_module="jaxclf.data.digits")
    test = open_source(builder, "digits/classes", "test")
    images = tmp_path / "images"
    images.mkdir()
    for index in range(3):
        Image.fromarray(np.asarray(test[index]["image"])[..., 0]).save(images / f"digit{index}.png")
    (images / "notes.png").write_text("not an image")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(images / "too_big.png")
    run_dir = tmp_path / "run"
    code, stderr = launch_in_process(
        "mode=predict",
        f"evaluation.run_dir={finished_run}",
        f"hydra.run.dir={run_dir}",
        f"data.data_dir={data_dir}",
        f"predict.inputs=[{images},test]",
    )
    assert code == 0, stderr
    rows = {row["input"]: row for row in read_predictions(run_dir)}
    for index in range(3):
        from_file, from_split = rows[str(images / f"digit{index}.png")], rows[f"test/{index}"]
        assert from_file["label"] == ""  # unknown for a file
        for column in ("predicted", "probability"):
            assert from_file[column] == from_split[column]
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert f"predict.inputs: {images / 'notes.png'}: not a readable image; left out" in warnings
    assert f"predict.inputs: {images / 'too_big.png'} is 16x16x1; the run's model takes 8x8x1 images; left out" in (
        warnings
    )
    assert not any("notes" in name or "too_big" in name for name in rows)


def test_nothing_to_predict_is_one_line(tmp_path, finished_run, data_dir):
    code, stderr = launch_in_process(
        "mode=predict",
        f"evaluation.run_dir={finished_run}",
        f"hydra.run.dir={tmp_path}",
        f"predict.inputs={tmp_path / 'missing.png'}",
    )
    assert code == 2 and stderr.strip().splitlines() == [
        f"jaxclf: error: predict.inputs=['{tmp_path / 'missing.png'}']: nothing to predict "
        "(no readable image of the right shape)"
    ]
    assert not (tmp_path / "predictions.csv").exists()


def test_a_run_predicts_each_split_once_for_its_mistakes_and_temperature(tmp_path, data_dir, monkeypatch):
    from conftest import EVERY_OUTPUT, TINY
    from jaxclf.predict import Predictor

    predicted = []
    original = Predictor.__call__

    def counting(self, state, split):
        predicted.append(len(split))
        return original(self, state, split)

    monkeypatch.setattr(Predictor, "__call__", counting)
    code, stderr = launch_in_process(f"hydra.run.dir={tmp_path}", f"data.data_dir={data_dir}", *TINY, *EVERY_OUTPUT)
    assert code == 0, stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "temperature" in summary  # temperature scaling ran, and the mistakes grid was drawn
    assert sorted(predicted) == sorted([summary["validation"]["num_examples"], summary["test"]["num_examples"]])
