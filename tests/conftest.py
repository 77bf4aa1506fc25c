"""Shared fixtures: the digits dataset prepared once per session, config composition."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


@pytest.fixture
def compose():
    """``compose(overrides) -> cfg`` over the real ``conf/``, as launch.py composes it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import jaxclf.config  # noqa: F401  (registers the schema)

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
