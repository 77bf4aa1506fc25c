"""What a Hydra multirun left behind: its jobs, their results, grouped by setting.

A job is a subdirectory of the sweep directory with Hydra's
``.hydra/overrides.yaml``. It finished when it wrote ``summary.json``, failed
when it wrote ``failure.json``. Jobs whose overrides differ only in ``seed``
share a *setting*; a setting's name is the overrides that vary across the
sweep (``regulariser=dropout``), without the ones every job shares.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from jaxclf.errors import ConfigError
from jaxclf.run_dir import FAILURE_FILE, SUMMARY_FILE, read_json

SEED_KEY = "seed"


@dataclasses.dataclass
class Job:
    directory: str
    overrides: list[str]
    summary: dict[str, Any] | None = None  # summary.json, when it finished
    failure: dict[str, Any] | None = None  # failure.json, when it failed

    @property
    def name(self) -> str:
        return os.path.basename(self.directory)

    def scalars(self) -> dict[str, list[tuple[int, float]]]:
        return read_scalars(self.directory)


@dataclasses.dataclass
class Setting:
    name: str
    jobs: list[Job]

    @property
    def finished(self) -> list[Job]:
        return [job for job in self.jobs if job.summary is not None]

    def values(self, path: Sequence[str]) -> np.ndarray:
        """One number from each finished job's summary, e.g. ``("test", "accuracy")``."""
        found = []
        for job in self.finished:
            value: Any = job.summary
            for key in path:
                value = value.get(key) if isinstance(value, dict) else None
            if value is not None:
                found.append(float(value))
        return np.asarray(found)


def load_jobs(sweep_dir: str) -> list[Job]:
    """The sweep's jobs, in the order Hydra launched them."""
    if not os.path.isdir(sweep_dir):
        raise ConfigError(f"{sweep_dir!r} is not a directory; give a multirun sweep directory (multirun/<date>/<time>)")
    jobs = []
    for entry in os.scandir(sweep_dir):
        overrides_path = os.path.join(entry.path, ".hydra", "overrides.yaml")
        if entry.is_dir() and os.path.exists(overrides_path):
            jobs.append(
                Job(
                    directory=entry.path,
                    overrides=[str(item) for item in OmegaConf.load(overrides_path)],
                    summary=read_json(os.path.join(entry.path, SUMMARY_FILE)),
                    failure=read_json(os.path.join(entry.path, FAILURE_FILE)),
                )
            )
    if not jobs:
        raise ConfigError(
            f"{sweep_dir!r} holds no Hydra jobs (subdirectories with .hydra/overrides.yaml); "
            "is it a multirun sweep directory?"
        )
    return sorted(jobs, key=lambda job: job_number(job.name))


def job_number(name: str) -> tuple[int, str]:
    number = name.split("_", 1)[0]
    return (int(number), name) if number.isdigit() else (1 << 30, name)


def group_by_setting(jobs: Sequence[Job]) -> list[Setting]:
    """Settings in the order of their first job."""
    shared = set.intersection(*(set(job.overrides) for job in jobs))
    settings: dict[str, Setting] = {}
    for job in jobs:
        parsed = OverridesParser.create().parse_overrides(job.overrides)
        lines = [(item.input_line, item.key_or_group) for item in parsed if item.input_line]
        varying = [line for line, key in lines if line not in shared and key != SEED_KEY]
        name = ", ".join(varying) or "(all jobs)"
        settings.setdefault(name, Setting(name, [])).jobs.append(job)
    return list(settings.values())


def read_scalars(run_dir: str) -> dict[str, list[tuple[int, float]]]:
    """Every scalar of the event files directly in ``run_dir``, by tag, as
    ``(step, value)`` sorted by step; a step written twice keeps its last value."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    accumulator = EventAccumulator(run_dir, size_guidance={"tensors": 0, "scalars": 0})
    accumulator.Reload()
    scalars: dict[str, dict[int, float]] = {}
    for tag in accumulator.Tags()["tensors"]:
        for event in accumulator.Tensors(tag):
            value = tensor_util.make_ndarray(event.tensor_proto)
            if value.dtype.kind == "f" and value.ndim == 0:
                scalars.setdefault(tag, {})[event.step] = float(value)
    return {tag: sorted(values.items()) for tag, values in scalars.items()}
