"""The TensorFlow-free TensorBoard writer: CLU's interface, and TensorBoard's
formats read back with TensorBoard's own reader."""

from __future__ import annotations

import inspect
import io
from pathlib import Path

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata
from tensorboard.util import tensor_util

from jaxclf.event_writer import TensorBoardWriter


def test_it_has_every_method_of_clus_metric_writer_with_the_same_parameters():
    from clu.metric_writers.interface import MetricWriter

    for name in MetricWriter.__abstractmethods__:
        ours, clus = inspect.signature(getattr(TensorBoardWriter, name)), inspect.signature(getattr(MetricWriter, name))
        assert [(p.name, p.kind) for p in ours.parameters.values()] == [
            (p.name, p.kind) for p in clus.parameters.values()
        ], name


def _read(logdir: Path) -> EventAccumulator:
    events = EventAccumulator(str(logdir), size_guidance={"tensors": 0})
    events.Reload()
    return events


def test_what_it_writes_reads_back_with_tensorboards_reader(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
    writer = TensorBoardWriter(str(tmp_path))
    writer.write_scalars(3, {"train/loss": 0.25})
    writer.write_scalars(7, {"train/loss": np.float32(0.125)})
    writer.write_images(7, {"eval/picture": image[None]})
    writer.write_texts(7, {"config": "**lr** = 0.1"})
    writer.write_histograms(7, {"weights": np.arange(100.0)}, num_buckets={"weights": 10})
    writer.write_hparams({"optim.learning_rate": 0.1, "model": "mlp", "seed": 3, "augment": True})
    writer.close()

    events = _read(tmp_path)
    loss = [(event.step, float(tensor_util.make_ndarray(event.tensor_proto))) for event in events.Tensors("train/loss")]
    assert loss == [(3, 0.25), (7, 0.125)]
    [picture] = events.Tensors("eval/picture")
    width, height, png = tensor_util.make_ndarray(picture.tensor_proto)
    assert (int(width), int(height)) == (7, 5)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), image)
    [text] = events.Tensors("config")
    assert tensor_util.make_ndarray(text.tensor_proto).item() == b"**lr** = 0.1"
    [histogram] = events.Tensors("weights")
    buckets = tensor_util.make_ndarray(histogram.tensor_proto)
    assert buckets.shape == (10, 3) and list(buckets[:, 2]) == [10.0] * 10  # 0..99 in ten equal buckets
    assert buckets[0, 0] == 0 and buckets[-1, 1] == 99
    [plugin_data] = events.PluginTagToContent(hparams_metadata.PLUGIN_NAME).values()
    session = hparams_metadata.parse_session_start_info_plugin_data(plugin_data)
    assert session.hparams["optim.learning_rate"].number_value == 0.1
    assert session.hparams["model"].string_value == "mlp"
    assert session.hparams["seed"].number_value == 3 and session.hparams["augment"].bool_value


def test_float_images_in_zero_one_become_8_bit_pngs(tmp_path):
    writer = TensorBoardWriter(str(tmp_path))
    writer.write_images(0, {"gray": np.array([[[0.0], [0.5], [1.0]]])})  # [H=1, W=3, C=1]
    writer.close()
    [picture] = _read(tmp_path).Tensors("gray")
    png = tensor_util.make_ndarray(picture.tensor_proto)[2]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), [[0, 128, 255]])


def test_a_watching_tensorboard_sees_scalars_before_the_writer_closes(tmp_path, monkeypatch):
    from jaxclf import event_writer

    monkeypatch.setattr(event_writer, "FLUSH_SECONDS", 0.0)
    writer = TensorBoardWriter(str(tmp_path))
    writer.write_scalars(5, {"train/loss": 0.5})
    assert [event.step for event in _read(tmp_path).Tensors("train/loss")] == [5]
    writer.close()
