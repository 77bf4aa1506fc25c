"""``data=folder``: a user's own images, one sub-folder per class, prepared
once as a TFDS dataset, trained on and predicted on, from folders the tests
write (any size, PNG and JPEG, grey and colour, and a broken file)."""

from __future__ import annotations

import csv
import json
import logging

import numpy as np
import pytest
from PIL import Image

from conftest import TINY, launch_in_process

COLOURS = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
SIZES = [(20, 24), (40, 30), (17, 17), (64, 48)]


def _write_class(folder, colour, count: int, rng) -> None:
    """``count`` noisy images of one colour: sizes, PNG or JPEG, colour or (every fourth) grey."""
    folder.mkdir(parents=True)
    for index in range(count):
        width, height = SIZES[index % len(SIZES)]
        pixels = np.clip(np.array(colour) + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        if index % 4 == 3:
            image = image.convert("L")  # grey: decoded to 3 channels
        image.save(folder / f"{index:03d}.{'png' if index % 2 else 'jpg'}")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """Three colour classes of 30 images each, and one file that is not an image."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, colour in COLOURS.items():
        _write_class(root / name, colour, 30, rng)
    (root / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


FOLDER_RUN = (
    "data=folder",
    "data.image_shape=[16,16,3]",
    "data.batch_size=30",
    *TINY,
)


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory, image_folder):
    run_dir, data_dir = tmp_path_factory.mktemp("folder_run"), tmp_path_factory.mktemp("folder_tfds")
    code, stderr = launch_in_process(
        f"data.path={image_folder}", f"data.data_dir={data_dir}", f"hydra.run.dir={run_dir}", *FOLDER_RUN
    )
    assert code == 0, stderr
    return run_dir, data_dir


def test_a_folder_trains_with_its_classes_and_a_seeded_holdout(folder_run):
    run_dir, _ = folder_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["hparams"]["data.num_classes"] == 3  # its class folders
    # 10% of each class's 30 images (3) for validation and for test; the broken file left out of red's train.
    assert summary["validation"]["num_examples"] == summary["test"]["num_examples"] == 9
    assert summary["train"]["num_examples"] == 3 * 24
    assert summary["test"]["accuracy"] > 0.9  # the colours tell the classes apart


def test_a_broken_file_is_named_once_and_left_out(tmp_path, image_folder, caplog):
    from jaxclf.config.schema import DataConfig
    from jaxclf.data.splits import build_splits

    caplog.set_level(logging.WARNING)
    data = DataConfig(
        name="folder",
        path=str(image_folder),
        data_dir=str(tmp_path / "tfds"),
        num_classes=3,
        image_shape=[16, 16, 3],
        mean=[0.0] * 3,
        std=[1.0] * 3,
        in_memory=False,
    )
    splits = build_splits(data)
    assert {name: len(split) for name, split in splits.items()} == {"validation": 9, "train": 3 * 24, "test": 9}
    warnings = [record.getMessage() for record in caplog.records if "broken.png" in record.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith(f"data.path: {image_folder / 'red' / 'broken.png'} does not")


def test_predictions_on_the_folders_test_split_agree_with_the_summary(tmp_path, folder_run, image_folder):
    run_dir, data_dir = folder_run
    code, stderr = launch_in_process(
        "mode=predict",
        f"evaluation.run_dir={run_dir}",
        f"hydra.run.dir={tmp_path}",
        f"data.data_dir={data_dir}",
        f"data.path={image_folder}",
        *FOLDER_RUN,
    )
    assert code == 0, stderr
    with open(tmp_path / "predictions.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    test = json.loads((run_dir / "summary.json").read_text())["test"]
    assert len(rows) == test["num_examples"]
    assert sum(row["label"] == row["predicted"] for row in rows) / len(rows) == pytest.approx(test["accuracy"])


def test_split_trees_are_the_splits(tmp_path):
    rng = np.random.default_rng(1)
    for split, count in (("train", 12), ("validation", 4), ("test", 5)):
        for name, colour in COLOURS.items():
            _write_class(tmp_path / "images" / split / name, colour, count, rng)
    from jaxclf.data.folder_layout import labelled_files

    files = labelled_files(str(tmp_path / "images"), holdout=0.1)
    assert {split: len(pairs) for split, pairs in files.items()} == {"train": 36, "validation": 12, "test": 15}
    assert sorted({label for _, label in files["test"]}) == [0, 1, 2]  # blue, green, red: sorted names
    assert all(f"/test/{sorted(COLOURS)[label]}/" in path for path, label in files["test"])


@pytest.mark.parametrize(
    "path,message",
    [
        (None, "data=folder needs data.path=DIR"),
        ("{missing}", "data.path={missing} is not a folder"),
        ("{one_class}", "data.path={one_class} has 1 class folder(s)"),
    ],
)
def test_a_path_that_is_not_a_folder_of_classes_is_one_line(tmp_path, path, message):
    (tmp_path / "one_class" / "cat").mkdir(parents=True)
    names = {"missing": str(tmp_path / "missing"), "one_class": str(tmp_path / "one_class")}
    overrides = [] if path is None else [f"data.path={path.format(**names)}"]
    code, stderr = launch_in_process("data=folder", f"hydra.run.dir={tmp_path / 'run'}", *overrides)
    assert code == 2
    [line] = stderr.strip().splitlines()
    assert line.startswith(f"jaxclf: error: {message.format(**names)}")
