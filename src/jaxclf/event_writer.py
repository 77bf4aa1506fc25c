"""CLU's ``MetricWriter`` interface on TensorBoard's own event-file writer.

CLU's ``SummaryWriter`` goes through ``tf.summary``, and importing
``clu.metric_writers`` imports TensorFlow: seconds of every launch. This
writer produces the same summaries (TensorBoard's v2 formats: scalars,
images as PNG, texts, histograms, HParams) with ``tensorboard`` and NumPy
alone, so a training run never imports TensorFlow. It has every method of
``clu.metric_writers.interface.MetricWriter`` with the same parameters (a
test checks), so any of CLU's writers can take its place.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.histogram import metadata as histogram_metadata
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.plugins.image import metadata as image_metadata
from tensorboard.plugins.scalar import metadata as scalar_metadata
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.summary.writer.record_writer import RecordWriter
from tensorboard.util import tensor_util

logger = logging.getLogger(__name__)

DEFAULT_HISTOGRAM_BUCKETS = 30  # as tf.summary.histogram
FLUSH_SECONDS = 10.0  # a TensorBoard watching the run sees it at most this late
_writers = itertools.count()  # two writers of one process in one second get distinct files


class TensorBoardWriter:
    """Writes summaries to a new event file in the local directory ``logdir``
    (created if missing), flushed every ``FLUSH_SECONDS`` and on ``flush()``.
    The file is TensorBoard's record format (``RecordWriter``) opened with
    Python's own ``open``: TensorBoard's ``EventFileWriter`` opens it through
    TensorFlow."""

    def __init__(self, logdir: str):
        os.makedirs(logdir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_writers)}.v2"
        self._file = open(os.path.join(logdir, name), "wb")  # noqa: SIM115  (open until close())
        self._records = RecordWriter(self._file)
        self._flushed = time.monotonic()
        self._add(event_pb2.Event(file_version="brain.Event:2"))

    def _add(self, event: event_pb2.Event) -> None:
        event.wall_time = time.time()
        self._records.write(event.SerializeToString())
        if time.monotonic() - self._flushed > FLUSH_SECONDS:
            self.flush()

    def _write(self, step: int, tag: str, metadata: summary_pb2.SummaryMetadata, tensor: Any) -> None:
        value = summary_pb2.Summary.Value(tag=tag, metadata=metadata, tensor=tensor_util.make_tensor_proto(tensor))
        self._add(event_pb2.Event(step=int(step), summary=summary_pb2.Summary(value=[value])))

    def write_summaries(self, step: int, values: Mapping[str, Any], metadata: Mapping[str, Any] | None = None) -> None:
        """Tensors with their own ``SummaryMetadata`` (as ``tf.summary.write``)."""
        for tag, value in values.items():
            tag_metadata = (metadata or {}).get(tag) or summary_pb2.SummaryMetadata()
            self._write(step, tag, tag_metadata, np.asarray(value))

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        for tag, value in scalars.items():
            metadata = scalar_metadata.create_summary_metadata(display_name=tag, description="")
            self._write(step, tag, metadata, np.asarray(value, np.float32))

    def write_images(self, step: int, images: Mapping[str, Any]) -> None:
        """``[N, H, W, C]`` (or ``[H, W, C]``) arrays, uint8 or floats in [0, 1], as PNGs."""
        for tag, value in images.items():
            batch = np.asarray(value)
            batch = batch[None] if batch.ndim == 3 else batch
            height, width = batch.shape[1:3]
            encoded = [_png(image) for image in batch]
            metadata = image_metadata.create_summary_metadata(display_name=tag, description="")
            self._write(step, tag, metadata, np.array([str(width), str(height), *encoded], dtype=object))

    def write_videos(self, step: int, videos: Mapping[str, Any]) -> None:
        logger.warning("TensorBoardWriter does not write videos (nor does CLU's SummaryWriter): %s", list(videos))

    def write_audios(self, step: int, audios: Mapping[str, Any], *, sample_rate: int) -> None:
        logger.warning("TensorBoardWriter does not write audio: %s", list(audios))

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        """Markdown, shown in TensorBoard's Text tab."""
        for tag, text in texts.items():
            metadata = text_metadata.create_summary_metadata(display_name=tag, description="")
            self._write(step, tag, metadata, np.array(text, dtype=object))

    def write_histograms(
        self, step: int, arrays: Mapping[str, Any], num_buckets: Mapping[str, int] | None = None
    ) -> None:
        for tag, value in arrays.items():
            buckets = (num_buckets or {}).get(tag, DEFAULT_HISTOGRAM_BUCKETS)
            counts, edges = np.histogram(np.asarray(value, np.float64).ravel(), bins=buckets)
            tensor = np.stack([edges[:-1], edges[1:], counts.astype(np.float64)], axis=1)
            metadata = histogram_metadata.create_summary_metadata(display_name=tag, description="")
            self._write(step, tag, metadata, tensor)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        """The run's settings for the HParams tab (values: bool, int, float or str)."""
        self.write_session(hparams, trial_id=None)

    def write_session(self, hparams: Mapping[str, Any], trial_id: str | None) -> None:
        """``write_hparams`` as the HParams tab's row ``trial_id`` (None: a hash of the values)."""
        self._add(event_pb2.Event(step=0, summary=hparams_summary.hparams_pb(dict(hparams), trial_id=trial_id)))

    def write_experiment(self, hparams: Sequence[str], metrics: Sequence[str]) -> None:
        """An HParams experiment: the columns of the HParams tab for every run
        under this writer's directory (hyperparameter names, scalar tags)."""
        summary = hparams_summary.hparams_config_pb(
            hparams=[hparams_summary.HParam(name) for name in hparams],
            metrics=[hparams_summary.Metric(tag) for tag in metrics],
        )
        self._add(event_pb2.Event(step=0, summary=summary))

    def flush(self) -> None:
        self._file.flush()
        self._flushed = time.monotonic()

    def close(self) -> None:
        self._file.close()


def _png(image: np.ndarray) -> bytes:
    if image.dtype != np.uint8:
        image = (np.clip(image, 0.0, 1.0) * 255).round().astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()
