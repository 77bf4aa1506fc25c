"""Every catalog data config, read through the real TFDS builders with
``tfds.testing.mock_data`` (random examples, no files), and the split logic:
minival hold-out, nested training subsets, encoded images."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
import tensorflow_datasets as tfds
from omegaconf import OmegaConf

from jaxclf import hardware as hardware_lib
from jaxclf.data.augment import (
    Augmenter,
    BatchRng,
    evaluation_view,
    inception_box,
    inception_crop,
    resize_and_centre_crop,
)
from jaxclf.data.loader import Normalizer, TrainLoader, eval_batches
from jaxclf.data.splits import EncodedSplit, InMemorySplit, build_splits, holdout, subset
from jaxclf.errors import ConfigError

MOCK_EXAMPLES = 40
HELD_OUT = 8


@pytest.fixture(scope="module")
def hardware():
    return hardware_lib.setup(hardware_lib.HardwareConfig())


def _mock_splits(compose, name: str, *overrides: str):
    cfg = compose([f"data={name}", f"data.validation_holdout={HELD_OUT}", "data.batch_size=8", *overrides])
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        return cfg, build_splits(OmegaConf.to_object(cfg.data))


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10", "cifar100", "imagenet2012"])
def test_catalog_configs_read_normalised_batches_of_the_configured_shape(compose, hardware, name):
    cfg, splits = _mock_splits(compose, name)
    data = cfg.data
    # No validation split in the catalog: a hold-out of train, disjoint from what is trained on.
    assert (len(splits["train"]), len(splits["validation"]), len(splits["test"])) == (
        MOCK_EXAMPLES - HELD_OUT,
        HELD_OUT,
        MOCK_EXAMPLES,
    )
    assert not set(splits["train"].source_indices) & set(splits["validation"].source_indices)
    assert isinstance(splits["train"], EncodedSplit if name == "imagenet2012" else InMemorySplit)

    normalize = Normalizer(data.mean, data.std)
    lowest, highest = normalize(np.zeros(1, np.uint8)), normalize(np.full(1, 255, np.uint8))
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        loader = TrainLoader(splits["train"], 8, seed=0, hardware=hardware)
        train = loader.batches(0, 2)
        loader.close()
        evaluation = next(eval_batches(splits["test"], 8, hardware))
    for batch, leading in ((train, (2, 8)), (evaluation, (8,))):
        assert batch["image"].dtype == np.uint8  # raw pixels travel; the Trainer normalises on device
        images, labels = np.asarray(normalize(batch["image"])), np.asarray(batch["label"])
        assert images.shape == (*leading, *data.image_shape) and images.dtype == np.float32
        assert np.all(images >= lowest.min() - 1e-5) and np.all(images <= highest.max() + 1e-5)
        assert images.std() > 0.1  # not constant
        assert labels.dtype == np.int32 and labels.min() >= 0 and labels.max() < data.num_classes


def test_production_holdouts_are_disjoint_fixed_and_sized():
    kept, held = holdout(60_000, 5_000)  # MNIST's train
    assert len(kept) == 55_000 and len(held) == 5_000
    assert not set(kept.tolist()) & set(held.tolist())
    np.testing.assert_array_equal(holdout(60_000, 5_000)[1], held)  # the same for every run
    with pytest.raises(ConfigError, match="data.validation_holdout=60000 is not valid"):
        holdout(60_000, 60_000)


def test_training_subsets_are_nested_across_sizes_and_seeded(compose, data_dir):
    def positions(examples: int, seed: int) -> set[int]:
        cfg = compose([f"data.data_dir={data_dir}", f"data.train_examples={examples}", f"seed={seed}"])
        splits = build_splits(OmegaConf.to_object(cfg.data))
        assert len(splits["validation"]) == 200 and len(splits["test"]) == 297  # evaluation stays whole
        return set(splits["train"].source_indices.tolist())

    small, large = positions(100, 0), positions(400, 0)
    assert len(small) == 100 and small < large
    assert positions(100, 1) != small
    with pytest.raises(ConfigError, match="data.train_examples=1301 is not valid; .* 1300 examples"):
        subset(np.arange(1300), 1301, seed=0)


def test_validation_split_and_holdout_are_exclusive(compose, data_dir):
    from jaxclf.config.validation import validate

    cfg = compose([f"data.data_dir={data_dir}", "data.validation_holdout=100"])
    with pytest.raises(ConfigError, match="set exactly one"):
        validate(cfg)


def test_synthetic_data_has_any_shape_and_class_count(compose):
    cfg = compose(
        ["data=synthetic", "data.image_shape=[12,10,2]", "data.num_classes=7", "data.synthetic_examples.train=50"]
    )
    splits = build_splits(OmegaConf.to_object(cfg.data))
    images, labels = splits["train"].read(np.arange(50))
    assert images.shape == (50, 12, 10, 2) and images.dtype == np.uint8
    assert set(labels.tolist()) <= set(range(7)) and len(set(labels.tolist())) > 3
    again, _ = build_splits(OmegaConf.to_object(cfg.data))["train"].read(np.arange(50))
    np.testing.assert_array_equal(images, again)  # fixed, not drawn per run


def test_inception_box_covers_the_configured_area_and_aspect():
    rng = np.random.default_rng(0)
    boxes = np.array([inception_box(300, 200, rng) for _ in range(300)])
    left, top, right, bottom = boxes.T
    assert left.min() >= 0 and top.min() >= 0 and right.max() <= 300 and bottom.max() <= 200
    areas, aspects = (right - left) * (bottom - top) / (300 * 200), (right - left) / (bottom - top)
    assert areas.min() >= 0.07 and areas.max() <= 1.0 and areas.min() < 0.2 and areas.max() > 0.8
    assert aspects.min() >= 0.74 and aspects.max() <= 1.34


def _encoded(image: np.ndarray, format: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format, quality=95)
    return buffer.getvalue()


@pytest.mark.parametrize("format", ["PNG", "JPEG"])
def test_inception_crop_resizes_the_drawn_box_of_the_image(format):
    # Columns carry their own x: a crop's first and last columns say where its box began and ended.
    ramp = np.tile(np.linspace(0, 255, 1024).round().astype(np.uint8)[None, :, None], (768, 1, 3))
    encoded = _encoded(ramp, format)
    for seed in range(20):
        left, _, right, _ = inception_box(1024, 768, np.random.default_rng(seed))
        crop = inception_crop(encoded, np.random.default_rng(seed), (32, 24), channels=3)
        assert crop.shape == (32, 24, 3) and crop.dtype == np.uint8
        # Output column j samples the box at x = left + (j + 1/2) * width / 24 - 1/2 (pixel centres).
        centres = left + (np.array([0, 23]) + 0.5) * (right - left) / 24 - 0.5
        # A JPEG of a small window is decoded at up to an eighth of its size: its box moves by up to 8 pixels.
        np.testing.assert_allclose(crop[16, [0, -1], 0], centres * 255 / 1023, atol=1 + 8 * 255 / 1023 + 2)


def test_evaluation_view_is_the_centre_crop_of_the_resized_image():
    gradient = np.tile((np.arange(512) // 2).astype(np.uint8)[None, :, None], (256, 1, 3))  # 512 wide, 256 high
    crop = resize_and_centre_crop(gradient, (224, 224))
    assert crop.shape == (224, 224, 3)
    # Resized to 512x256 (shorter side 256 = 224 / 0.875): the centre 224 columns are 144..367 of the original.
    np.testing.assert_allclose(crop[0, [0, -1], 0], [144 // 2, 367 // 2], atol=1)
    np.testing.assert_array_equal(evaluation_view(_encoded(gradient, "PNG"), (224, 224), channels=3), crop)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (("data=mnist",), "data.name=mnist is not prepared in {data_dir} (data.data_dir; looked for {data_dir}/mnist/"),
        (("data=cifar10", "data.data_dir={empty}"), "data.name=cifar10 is not prepared in {empty} (data.data_dir"),
        (("data=imagenet2012",), "data.name=imagenet2012 is not prepared in {data_dir} (data.data_dir; looked for"),
        (("data=imagenet2012", "data.manual_dir={empty}"), "data.manual_dir={empty} is empty or missing"),
        (("data=imagenet2012", "data.manual_dir={empty}/absent"), "data.manual_dir={empty}/absent is empty or missing"),
    ],
    ids=["missing", "empty_data_dir", "imagenet_without_manual_dir", "empty_manual_dir", "absent_manual_dir"],
)
def test_data_that_is_not_there_is_a_config_error_saying_how_to_prepare_it(
    compose, data_dir, tmp_path, overrides, message
):
    names = {"data_dir": data_dir, "empty": str(tmp_path)}
    cfg = compose([f"data.data_dir={data_dir}", *(override.format(**names) for override in overrides)])
    with pytest.raises(ConfigError) as error:
        build_splits(OmegaConf.to_object(cfg.data))
    assert message.format(**names) in str(error.value) and "\n" not in str(error.value)
    hint = {"imagenet2012": "data.manual_dir", "mnist": "jaxclf-data fetch mnist"}.get(cfg.data.name, "tfds build")
    assert hint in str(error.value)


def test_encoded_batches_are_the_same_after_a_restart(compose, hardware):
    _, splits = _mock_splits(compose, "imagenet2012", "data.image_shape=[32,32,3]", "data.workers=3")
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        uninterrupted = TrainLoader(splits["train"], 8, seed=0, hardware=hardware)
        steps_2_and_3 = np.asarray(uninterrupted.batches(2, 2)["image"])
        uninterrupted.close()
        restarted = TrainLoader(splits["train"], 8, seed=0, hardware=hardware)
        step_3 = np.asarray(restarted.batches(3, 1)["image"])
        restarted.close()
    np.testing.assert_array_equal(steps_2_and_3[1], step_3[0])
    assert not np.array_equal(steps_2_and_3[0], steps_2_and_3[1])


@pytest.mark.parametrize("training", [False, True])
def test_each_encoded_image_is_decoded_into_its_own_row_of_the_batch(training):
    # Flat grey JPEGs whose level is 10 x their label: a row holding another record's pixels shows.
    records = [
        {"image": _encoded(np.full((40, 30), 10 * label, np.uint8), "JPEG"), "label": label} for label in range(24)
    ]
    split = EncodedSplit(records, np.arange(24), (8, 8, 1), Augmenter(inception_crop=True, horizontal_flip=True), 4)
    order = np.random.default_rng(0).permutation(24)
    images, labels = split.read(order, BatchRng(0, 24) if training else None)
    np.testing.assert_array_equal(labels, order)
    np.testing.assert_allclose(images.reshape(24, -1), 10 * order[:, None] * np.ones((1, 64)), atol=2)


def test_an_image_shape_that_does_not_match_the_dataset_is_a_config_error(compose):
    with pytest.raises(
        ConfigError, match=re.escape("data.image_shape=[28, 28, 3] does not match the dataset's images [32, 32, 3]")
    ):
        _mock_splits(compose, "cifar10", "data.image_shape=[28,28,3]")


@pytest.mark.slow  # ~9 s on 2 cores
def test_parallel_preparations_of_one_dataset_wait_for_each_other(tmp_path):
    """Three processes prepare the digits into one fresh directory at once (a
    joblib sweep on a fresh machine); a killed preparation's folder is cleaned up."""
    import subprocess
    import sys

    stale = tmp_path / "digits" / "classes" / "incomplete.KILLED_1.0.0"
    stale.mkdir(parents=True)
    prepare = (
        "import sys; from jaxclf.data.source import open_builder; "
        "open_builder('digits/classes', data_dir=sys.argv[1], manual_dir=None, builder_module='jaxclf.data.digits')"
    )
    processes = [
        subprocess.Popen([sys.executable, "-c", prepare, str(tmp_path)], stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-2000:]
    assert not stale.exists()
    assert sorted(path.name for path in (tmp_path / "digits" / "classes").iterdir()) == [".prepare.lock", "1.0.0"]
