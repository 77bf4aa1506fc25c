"""``mode=predict``: predictions.csv for a split or image files, from a finished run."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
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
    assert f"predict.inputs: {images / 'notes.png'} is not a readable image; left out" in warnings
    assert f"predict.inputs: {images / 'too_big.png'} is 16x16; the run's model takes 8x8 images; left out" in warnings
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


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares ``width``x``height`` grey pixels and holds none:
    what a decompression bomb's header says (decoding it would fail)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_any_file_in_a_folder_is_converted_or_left_out_with_one_warning(tmp_path, finished_run, data_dir, caplog):
    """16-bit and palette images are predicted as their 8-bit twins; a FIFO,
    a bomb, a huge image and float pixels are each named once and left out,
    and nothing is decoded before its size is checked."""
    caplog.set_level(logging.WARNING)
    builder = open_builder("digits/classes", data_dir=data_dir, manual_dir=None, builder_module="jaxclf.data.digits")
    digit = np.asarray(open_source(builder, "digits/classes", "test")[0]["image"])[..., 0]  # 0..16
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(digit).save(images / "eight_bit.png")
    sixteen_bit = digit.astype(np.uint16) * 257 + 100  # 8 bits: the digit's values; modulo 256: 100 more
    Image.fromarray(sixteen_bit).save(images / "sixteen_bit.png")
    palette = Image.fromarray((255 - digit).astype(np.uint8), mode="L").convert("P")  # indices: 255 - value
    palette.putpalette([value for index in range(256) for value in [255 - index] * 3])
    palette.save(images / "palette.png")
    Image.fromarray(digit.astype(np.float32)).save(images / "float.tiff")
    os.mkfifo(images / "fifo.png")  # opening it would wait for a writer forever
    (images / "bomb.png").write_bytes(_png_header(20000, 20000))
    (images / "huge.png").write_bytes(_png_header(12000, 12000))
    run_dir = tmp_path / "run"
    code, stderr = launch_in_process(
        "mode=predict", f"evaluation.run_dir={finished_run}", f"hydra.run.dir={run_dir}", f"predict.inputs={images}"
    )
    assert code == 0, stderr
    rows = {Path(row["input"]).name: row for row in read_predictions(run_dir)}
    assert set(rows) == {"eight_bit.png", "sixteen_bit.png", "palette.png"}
    for name in ("sixteen_bit.png", "palette.png"):
        for column in ("predicted", "probability", "top2", "top2_probability"):
            assert rows[name][column] == rows["eight_bit.png"][column], name
    warnings = [
        record.getMessage()
        for record in caplog.records
        if record.levelno == logging.WARNING and record.getMessage().startswith("predict.inputs:")
    ]
    left_out = {
        "fifo.png": f"predict.inputs: {images / 'fifo.png'} is not a regular file; left out",
        "bomb.png": f"predict.inputs: {images / 'bomb.png'} is too large to read safely",
        "huge.png": f"predict.inputs: {images / 'huge.png'} is 12000x12000; the run's model takes 8x8 images; left out",
        "float.tiff": f"predict.inputs: {images / 'float.tiff'} has F pixels (floating point or unknown",
    }
    for name, message in left_out.items():
        assert sum(warning.startswith(message) for warning in warnings) == 1, (name, warnings)
    assert len(warnings) == len(left_out)


def test_a_stored_temperature_outside_zero_to_infinity_is_refused(tmp_path, finished_run, data_dir):
    run_dir = tmp_path / "run"
    shutil.copytree(finished_run, run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    for bad in (-1, 0, "1.5", True):
        (run_dir / "summary.json").write_text(json.dumps({**summary, "temperature": bad}))
        workdir = tmp_path / f"predict_{bad}"
        code, stderr = launch_in_process(
            "mode=predict", f"evaluation.run_dir={run_dir}", f"hydra.run.dir={workdir}", f"data.data_dir={data_dir}"
        )
        assert code == 2
        assert stderr.strip().splitlines() == [
            f"jaxclf: error: {run_dir / 'summary.json'}: temperature={bad!r} is not valid; a fitted temperature lies "
            "in (0, inf) (remove the key to predict without temperature scaling)"
        ]
        assert not (workdir / "predictions.csv").exists()


def test_an_interrupted_atomic_write_leaves_the_file_as_it_was_and_no_temporary(tmp_path):
    from jaxclf.run_dir import replaced_atomically

    path = tmp_path / "predictions.csv"
    path.write_text("good\n")
    with pytest.raises(KeyboardInterrupt), replaced_atomically(str(path)) as file:
        file.write("half")
        raise KeyboardInterrupt
    assert path.read_text() == "good\n"
    assert sorted(tmp_path.iterdir()) == [path]
