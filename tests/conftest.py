"""Shared fixtures and helpers: the digits prepared once per session, config
composition, launching runs, and reading back what runs write."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from jaxclf.callbacks import Callback

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> str:
    """A TFDS data dir holding the prepared digits dataset."""
    from jaxclf.data.digits import Digits

    directory = tmp_path_factory.mktemp("tfds")
    for config in ("classes", "parity"):
        Digits(config=config, data_dir=str(directory), file_format="array_record").download_and_prepare()
    return str(directory)


# A run of the default model small enough for end-to-end tests; the images
# (matplotlib, a few seconds a run) and temperature scaling are left to the
# tests of them (finished_run has them).
TINY = (
    "trainer.max_steps=60",
    "callbacks.evaluation.every_steps=20",
    "callbacks.checkpoint.every_steps=20",
    "callbacks.tensorboard.every_steps=20",
    "callbacks.progress_bar=null",
    "callbacks.tensorboard.images=false",
    "callbacks.temperature_scaling=null",
)
EVERY_OUTPUT = (
    "callbacks.tensorboard.images=true",
    "callbacks.temperature_scaling={_target_:jaxclf.callbacks.TemperatureScaling}",
)


@pytest.fixture(scope="session")
def fetched_data_dir() -> str:
    """The data dir where ``.ci/run`` fetched the real datasets (``jaxclf-data fetch``)."""
    directory = os.environ.get("JAXCLF_FETCHED_DATA_DIR")
    if not directory:
        pytest.skip("JAXCLF_FETCHED_DATA_DIR is not set (.ci/run sets it after jaxclf-data fetch mnist_5k)")
    return directory


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory, data_dir) -> Path:
    """A finished TINY run of the default model; tests only read it (or copy it)."""
    run_dir = tmp_path_factory.mktemp("run")
    result = run_launch(f"hydra.run.dir={run_dir}", f"data.data_dir={data_dir}", *TINY, *EVERY_OUTPUT)
    assert result.returncode == 0, result.stderr
    return run_dir


@pytest.fixture
def compose():
    """``compose(overrides) -> cfg`` over the real ``conf/``, as launch.py composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import jaxclf.config.schema  # noqa: F401  (registers the schema)

    def _compose(overrides=(), return_hydra_config=False):
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)

    yield _compose
    GlobalHydra.instance().clear()


def run_launch(*overrides: str, env_extra: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """Runs ``python launch.py`` as a user would; returns the finished process."""
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def launch_in_process(*overrides: str) -> tuple[int, str]:
    """Runs ``launch.py`` in this process, as ``python launch.py *overrides``
    would (Hydra's composition and error reporting included); returns its exit
    code and what it wrote to stderr. Much faster than a subprocess.

    Hydra's logging setup is switched off (it would replace pytest's log
    capture); the run's log records reach pytest's ``caplog``."""
    import contextlib
    import io
    import runpy

    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    argv, stderr = sys.argv, io.StringIO()
    sys.argv = [str(ROOT / "launch.py"), "hydra/job_logging=none", "hydra/hydra_logging=none", *overrides]
    try:
        with contextlib.redirect_stderr(stderr):
            runpy.run_path(str(ROOT / "launch.py"), run_name="__main__")
    except SystemExit as exit_:
        return (exit_.code if isinstance(exit_.code, int) else 1), stderr.getvalue()
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()
    return 0, stderr.getvalue()


def tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the run directory's event files, via TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer
    from tensorboard.util import tensor_util

    multiplexer = EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(run_dir))
    multiplexer.Reload()
    scalars: dict[str, list[tuple[int, float]]] = {}
    for run, tags in multiplexer.Runs().items():
        for tag in tags["tensors"]:
            for event in multiplexer.Tensors(run, tag):
                value = tensor_util.make_ndarray(event.tensor_proto)
                if value.dtype.kind == "f" and value.ndim == 0:
                    scalars.setdefault(tag, []).append((event.step, float(value)))
    return {tag: sorted(values) for tag, values in scalars.items()}


def digest(directory: Path) -> dict[str, str]:
    """sha256 of every file under ``directory``, by relative path."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def final_params(run_dir: Path) -> list:
    """The parameters (and model state) of the run's latest checkpoint, as NumPy arrays."""
    import jax
    import numpy as np

    from jaxclf.restore import restore_model

    _, variables, _ = restore_model(str(run_dir))
    return [np.asarray(leaf) for leaf in jax.tree.leaves(variables)]


def environment_with_tests(**extra: str) -> dict[str, str]:
    """This process's environment with ``tests/`` importable by a subprocess (``conftest.SignalAtStep``)."""
    path = os.pathsep.join(filter(None, [str(ROOT / "tests"), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def checkpoint_steps(run_dir: Path) -> list[int]:
    """The steps of the checkpoints in ``run_dir/checkpoints``."""
    return sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit())


class SignalAtStep(Callback):
    """Sends ``signal_number`` to this process at a chosen moment of a run:
    preemption or a kill, deterministically
    (``+callbacks.NAME._target_=conftest.SignalAtStep``). ``phase``:

    - ``step``: once training reaches ``step``;
    - ``after_save``: right after the checkpoint of ``step`` is issued (its
      write still in flight: this callback runs after the checkpoint one);
    - ``fit_end``: when training ends, before the final evaluation;
    - ``test_end``: after the final evaluation, before ``summary.json``.

    ``process``: only that process of a multi-process run sends it."""

    order = 2  # after the checkpoint callback (1)

    def __init__(
        self, step: int = 0, signal_number: int = signal.SIGTERM, phase: str = "step", process: int | None = None
    ):
        self.step, self.signal_number, self.phase, self.sent = step, signal_number, phase, False
        self.process = process  # None: every process of the run

    def _send(self) -> None:
        import jax

        if self.process is not None and jax.process_index() != self.process:
            return
        if not self.sent:
            self.sent = True
            signal.raise_signal(self.signal_number)

    def on_train_steps_end(self, trainer, state, step):
        if (self.phase == "step" and step >= self.step) or (
            self.phase == "after_save" and step == self.step and step in trainer.checkpoints.steps()
        ):
            self._send()

    def on_fit_end(self, trainer, state):
        if self.phase == "fit_end":
            self._send()

    def on_test_end(self, trainer, state, results):
        if self.phase == "test_end":
            self._send()
