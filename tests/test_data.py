"""The digits builder, augmentation, and the step-addressed loader."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from omegaconf import OmegaConf
from sklearn.datasets import load_digits

from jaxclf import hardware as hardware_lib
from jaxclf.data import digits
from jaxclf.data.augment import Augmenter, BatchRng, random_crop, random_flip
from jaxclf.data.loader import Normalizer, TrainLoader, eval_batches
from jaxclf.data.splits import InMemorySplit, build_splits
from jaxclf.errors import ConfigError

IDENTITY = Normalizer([0.0], [1.0])


@pytest.fixture(scope="module")
def hardware():
    return hardware_lib.setup(hardware_lib.HardwareConfig())


def _splits(compose, data_dir: str, *overrides: str) -> dict[str, InMemorySplit]:
    cfg = compose([f"data.data_dir={data_dir}", *overrides])
    return build_splits(OmegaConf.to_object(cfg.data))


def test_digits_splits_are_the_documented_seeded_permutation(data_dir, compose):
    builder = tfds.builder("digits/classes", data_dir=data_dir)
    assert {name: info.num_examples for name, info in builder.info.splits.items()} == {
        "train": 1300,
        "validation": 200,
        "test": 297,
    }
    reference = load_digits()
    splits = _splits(compose, data_dir)
    seen = []
    for name, indices in digits.split_indices().items():
        split = splits[name]
        # Same images and labels, in the documented order, pixel for pixel.
        np.testing.assert_array_equal(split.images[..., 0], reference.images[indices])
        np.testing.assert_array_equal(split.labels, reference.target[indices])
        seen.extend(indices.tolist())
    assert sorted(seen) == list(range(1797))  # disjoint and complete


def test_config_normalisation_matches_training_statistics(data_dir, compose):
    cfg = compose()
    train = _splits(compose, data_dir)["train"]
    np.testing.assert_allclose(cfg.data.mean, [train.images.mean()], atol=1e-3)
    np.testing.assert_allclose(cfg.data.std, [train.images.std()], atol=1e-3)
    normalised = Normalizer(cfg.data.mean, cfg.data.std)(train.images)
    assert abs(normalised.mean()) < 1e-3 and abs(normalised.std() - 1) < 1e-3
    assert normalised.dtype == np.float32 and train.labels.dtype == np.int32


def test_unknown_dataset_and_split_give_config_errors(data_dir, compose):
    with pytest.raises(ConfigError, match="data.name='no_such_dataset'"):
        _splits(compose, data_dir, "data.name=no_such_dataset")
    with pytest.raises(ConfigError, match="split 'training'.*train, validation, test"):
        _splits(compose, data_dir, "data.splits.train=training")


def _toy_split(n: int) -> InMemorySplit:
    images = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1) * np.ones((1, 2, 2, 1), np.float32)
    return InMemorySplit(images=images, labels=np.arange(n, dtype=np.int32) % 10)


def test_train_batches_are_deterministic_epochs_without_replacement(hardware):
    split = _toy_split(100)
    loader = TrainLoader(split, batch_size=32, seed=3, hardware=hardware)
    assert loader.steps_per_epoch == 3  # the incomplete 4th batch is dropped
    epoch0 = np.concatenate([loader.indices(step) for step in range(3)])
    assert len(set(epoch0.tolist())) == 96  # no example twice within an epoch
    assert not np.array_equal(loader.indices(0), loader.indices(3))  # reshuffled next epoch
    again = TrainLoader(split, batch_size=32, seed=3, hardware=hardware)
    np.testing.assert_array_equal(again.indices(7), loader.indices(7))
    other_seed = TrainLoader(split, batch_size=32, seed=4, hardware=hardware)
    assert not np.array_equal(other_seed.indices(0), loader.indices(0))


def test_restart_at_step_k_yields_the_same_batches(hardware):
    split = _toy_split(100)
    uninterrupted = TrainLoader(split, batch_size=16, seed=0, hardware=hardware)
    stream = [np.asarray(uninterrupted.batches(step, 1)["image"]) for step in range(20)]
    restarted = TrainLoader(split, batch_size=16, seed=0, hardware=hardware)  # fresh process state
    stacked = restarted.batches(13, 7)  # steps 13..19 in one fused call
    np.testing.assert_array_equal(np.asarray(stacked["image"]), np.concatenate(stream[13:20]))
    labels = np.asarray(stacked["label"][2])
    np.testing.assert_array_equal(labels, split.labels[uninterrupted.indices(15)])


def test_batches_are_global_arrays_split_over_both_mesh_axes(hardware):
    loader = TrainLoader(_toy_split(64), batch_size=16, seed=0, hardware=hardware)
    batch = loader.batches(0, 4)
    assert batch["image"].shape == (4, 16, 2, 2, 1) and batch["label"].shape == (4, 16)
    assert batch["image"].sharding.spec == jax.sharding.PartitionSpec(None, hardware_lib.BATCH_AXES)
    assert batch["image"].sharding.mesh.axis_names == (hardware_lib.DATA_AXIS, hardware_lib.FSDP_AXIS)


@pytest.mark.parametrize("batch_size", [7, 64, 200, 256])
def test_eval_batches_cover_every_example_exactly_once(hardware, batch_size):
    split = _toy_split(200)
    seen = []
    for batch in eval_batches(split, batch_size, hardware):
        assert batch["image"].shape[0] == batch_size  # padded, never a ragged remainder
        mask = np.asarray(batch["mask"])
        seen.extend(np.asarray(batch["image"])[mask, 0, 0, 0].astype(int).tolist())
    assert sorted(seen) == list(range(200))


def test_bad_batch_sizes(hardware):
    with pytest.raises(ConfigError, match="data.batch_size=0"):
        TrainLoader(_toy_split(10), batch_size=0, seed=0, hardware=hardware)
    with pytest.raises(ConfigError, match="data.batch_size=11 is larger than the training split"):
        TrainLoader(_toy_split(10), batch_size=11, seed=0, hardware=hardware)


def test_random_crop_shifts_each_image_and_pads_with_the_fill_value():
    images = np.arange(2 * 4 * 5 * 2, dtype=np.float32).reshape(2, 4, 5, 2)
    cropped = random_crop(images, BatchRng(0, len(images)), padding=2, fill=-1.0)
    assert cropped.shape == images.shape
    for image, crop in zip(images, cropped, strict=True):
        # Some shift (dy, dx) in [-2, 2]² reproduces the crop from the padded image.
        padded = np.pad(image, ((2, 2), (2, 2), (0, 0)), constant_values=-1.0)
        matches = [
            (dy, dx) for dy in range(5) for dx in range(5) if np.array_equal(padded[dy : dy + 4, dx : dx + 5], crop)
        ]
        assert len(matches) == 1


def test_random_crop_covers_every_shift():
    image = np.zeros((1, 3, 3, 1), np.float32)
    image[0, 1, 1, 0] = 1.0  # the centre pixel lands where the shift puts it
    rng = BatchRng(0, 1)
    positions = {tuple(np.argwhere(random_crop(image, rng, 1)[0, ..., 0])[0]) for _ in range(200)}
    assert positions == {(y, x) for y in range(3) for x in range(3)}


def test_random_flip_mirrors_about_half_the_images():
    images = np.random.default_rng(1).normal(size=(1000, 3, 4, 1)).astype(np.float32)
    flipped = random_flip(images, BatchRng(2, len(images)))
    mirrored = np.all(flipped == images[:, :, ::-1], axis=(1, 2, 3))
    unchanged = np.all(flipped == images, axis=(1, 2, 3))
    assert np.all(mirrored ^ unchanged) and 400 < mirrored.sum() < 600


def test_augmented_batches_depend_on_the_step_only(hardware):
    images = np.random.default_rng(0).integers(0, 256, size=(64, 6, 6, 3), dtype=np.uint8)
    augment = Augmenter(crop_padding=2, horizontal_flip=True, randaugment_layers=2)
    split = InMemorySplit(images=images, labels=np.zeros(64, np.int32), augment=augment)
    loader = TrainLoader(split, batch_size=8, seed=5, hardware=hardware)
    fused = np.asarray(loader.batches(3, 4)["image"])
    restarted = TrainLoader(split, batch_size=8, seed=5, hardware=hardware)
    one_by_one = np.stack([np.asarray(restarted.batches(step, 1)["image"][0]) for step in (6, 4, 3, 5)])
    np.testing.assert_array_equal(fused, one_by_one[[2, 1, 3, 0]])
    plain_split = InMemorySplit(images=images, labels=split.labels)
    plain = np.asarray(TrainLoader(plain_split, batch_size=8, seed=5, hardware=hardware).batches(3, 4)["image"])
    assert not np.array_equal(fused, plain)


def test_a_process_augments_its_rows_as_a_single_process_would():
    """Each draw covers the whole global batch, so the batch does not depend on the process count."""
    images = np.random.default_rng(0).integers(0, 256, size=(32, 6, 6, 1), dtype=np.uint8)
    augment = Augmenter(crop_padding=2, horizontal_flip=True, randaugment_layers=2)
    split = InMemorySplit(images=images, labels=np.arange(32, dtype=np.int32), augment=augment)
    indices = np.random.default_rng(1).permutation(32)[:16]
    whole, _ = split.read(indices, BatchRng([7, 3], 16))
    halves = [split.read(indices[rows], BatchRng([7, 3], 16, rows))[0] for rows in np.split(np.arange(16), 2)]
    np.testing.assert_array_equal(np.concatenate(halves), whole)
    assert not np.array_equal(whole, images[indices])


class _CountingSplit(InMemorySplit):
    """Counts the examples read."""

    def read(self, indices, rng=None):
        object.__setattr__(self, "examples_read", getattr(self, "examples_read", 0) + len(indices))
        return super().read(indices, rng)


def test_restarting_late_reads_only_the_batches_it_needs(hardware):
    split = _CountingSplit(images=np.zeros((100, 2, 2, 1), np.uint8), labels=np.zeros(100, np.int32))
    loader = TrainLoader(split, batch_size=10, seed=0, hardware=hardware, prefetch=0)
    loader.batches(1_000_000, 3)  # epoch 100,000: no replay of the epochs before it
    loader.close()
    assert split.examples_read == 30


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_every_randaugment_operation_keeps_size_and_mode(mode):
    from PIL import Image

    from jaxclf.data.randaugment import OPS, rand_augment

    rng = np.random.default_rng(0)
    channels = 1 if mode == "L" else 3
    image = Image.fromarray(rng.integers(0, 256, size=(12, 10, channels), dtype=np.uint8).squeeze())
    for name, op in OPS.items():
        out = op(image, 0.5, np.random.default_rng(1))
        assert out.size == image.size and out.mode == mode, name
    first = np.asarray(rand_augment(image, np.random.default_rng(3), num_layers=3, magnitude=9))
    again = np.asarray(rand_augment(image, np.random.default_rng(3), num_layers=3, magnitude=9))
    np.testing.assert_array_equal(first, again)  # the generator decides everything
    assert np.array_equal(np.asarray(OPS["identity"](image, 1.0, rng)), np.asarray(image))
    assert not np.array_equal(np.asarray(OPS["solarize"](image, 1.0, rng)), np.asarray(image))
