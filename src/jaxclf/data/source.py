"""Opening TFDS datasets for random access, with one-line errors when they are not there.

Reading goes through ``tfds.data_source`` (array_record), which needs no
TensorFlow and reads any example by index. A builder outside the TFDS catalog
(``builder_module``, e.g. the embedded digits) is prepared on first use; a
dataset that needs manual downloads (ImageNet) is prepared from
``manual_dir``; anything else must already be prepared in ``data_dir``:
nothing is downloaded at run time.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import io
import logging
import os
import shutil
from collections.abc import Iterator, Sequence
from typing import Any

from jaxclf.errors import ConfigError

logger = logging.getLogger(__name__)
Source = Sequence[dict[str, Any]]  # random access: len(), source[i]


def open_builder(name: str, *, data_dir: str | None, manual_dir: str | None, builder_module: str | None):
    """The prepared TFDS builder of ``name``, or a ``ConfigError`` saying how to prepare it.

    Preparation holds a lock beside the dataset, so parallel jobs (a joblib
    sweep on a fresh machine) wait for one preparation and then read it; the
    ``incomplete.*`` folders of a preparation that was killed are removed."""
    import tensorflow_datasets as tfds

    if builder_module is not None:
        importlib.import_module(builder_module)  # registers the builder with TFDS
    try:
        builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")
    except tfds.core.registered.DatasetNotFoundError:
        raise ConfigError(f"data.name={name!r} is not a TFDS dataset (see tfds.list_builders())") from None
    manual = bool(builder.MANUAL_DOWNLOAD_INSTRUCTIONS) and manual_dir is not None
    if builder.is_prepared() or not (builder_module is not None or manual):
        return builder  # prepared, or nothing here can prepare it (open_source says how)
    if manual_dir is not None and manual and (not os.path.isdir(manual_dir) or not os.listdir(manual_dir)):
        raise ConfigError(f"data.manual_dir={manual_dir} is empty or missing; put {name}'s downloaded archives there")
    with _preparation_lock(builder):
        builder = tfds.builder(name, data_dir=data_dir, file_format="array_record")  # prepared while we waited?
        if not builder.is_prepared():
            _hide_accelerators_from_tensorflow()
            _remove_incomplete(builder)
            download_config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual else None
            with _quiet_unless(manual, builder):
                builder.download_and_prepare(file_format="array_record", download_config=download_config)
    return builder


@contextlib.contextmanager
def _quiet_unless(long: bool, builder) -> Iterator[None]:
    """A dataset built from what is installed (the embedded digits) takes a
    second: one log line instead of TFDS's "Downloading ... Unknown size"
    and progress bars, which stay for the ``long`` preparations (ImageNet)."""
    if long:
        yield
        return
    import tensorflow_datasets as tfds

    logger.info("Preparing %s into %s (once; later runs read it)", builder.name, builder.data_dir)
    tfds.display_progress_bar(False)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        tfds.display_progress_bar(True)


def _hide_accelerators_from_tensorflow() -> None:
    """Preparing a dataset imports TensorFlow (nothing else in a run does),
    which must not take the GPUs' or TPUs' memory from JAX."""
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    tf.config.set_visible_devices([], "TPU")


@contextlib.contextmanager
def _preparation_lock(builder) -> Iterator[None]:
    """An exclusive lock on preparing ``builder``'s dataset (waits for another process's)."""
    directory = os.path.dirname(builder.data_dir)  # <data_dir>/<name>[/<config>], above the version
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, ".prepare.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        yield


def _remove_incomplete(builder) -> None:
    """Folders a killed preparation left behind (only the lock holder prepares)."""
    directory = os.path.dirname(builder.data_dir)
    for name in os.listdir(directory):
        if name.startswith("incomplete."):
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def not_prepared_error(builder, name: str) -> ConfigError:
    """How to prepare ``name`` when ``builder`` has no data (there is no network at run time)."""
    root = os.path.dirname(os.path.dirname(builder.data_dir))
    where = f"{root} (data.data_dir; looked for {builder.data_dir})"
    if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
        how = (
            f"set data.manual_dir to the directory holding its downloaded archives "
            f"(see tfds.builder({name!r}).MANUAL_DOWNLOAD_INSTRUCTIONS) and it is prepared on first use"
        )
    else:
        how = f"prepare it where there is network (tfds build {name} --data_dir=DIR) and point data.data_dir at DIR"
    return ConfigError(f"data.name={name} is not prepared in {where}; {how}")


def open_source(builder, name: str, split: str, *, encoded_images: bool = False) -> Source:
    """Random access to ``split``; with ``encoded_images`` the image bytes are left undecoded."""
    import tensorflow_datasets as tfds

    decoders = {"image": tfds.decode.SkipDecoding()} if encoded_images else None
    try:
        return builder.as_data_source(split=split, decoders=decoders)
    except (KeyError, ValueError, AssertionError) as error:
        if not builder.info.splits:
            raise not_prepared_error(builder, name) from None
        available = ", ".join(builder.info.splits)
        raise ConfigError(f"split {split!r} of {name} is not valid ({error}); splits: {available}") from None
