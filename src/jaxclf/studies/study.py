"""Hydra callbacks for multirun studies.

``HParamsExperiment`` writes, into the sweep directory, the columns of
TensorBoard's HParams tab: the swept keys and the seed, and a few metrics.

``TrainTeacher`` trains, once and before a sweep's first job, the teacher
that the sweep's distillation jobs read (``labels=distill`` points
``loss.teacher`` at ``<sweep dir>/teacher``). It runs before any launcher
starts, so parallel (joblib) and cluster (submitit) jobs all find it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

from hydra import compose
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from jaxclf.console import quiet_libraries

logger = logging.getLogger(__name__)

# Groups that choose a sweep's setting: the teacher takes none of them.
STUDY_GROUPS = ("experiment", "labels", "regulariser")


class TrainTeacher(Callback):
    """Trains a jaxclf run into ``directory`` when a multirun starts, unless
    it has finished there already (an interrupted teacher resumes).

    Its config is the primary config with ``overrides`` and then the sweep's
    fixed command-line overrides (a data directory, a shorter
    ``trainer.max_steps``); never the experiment's or the setting's, nor
    the swept values."""

    def __init__(self, directory: str, overrides: Sequence[str] = ()):
        self.directory = directory
        self.overrides = list(overrides)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from jaxclf import run_dir  # JAX loads only when a sweep starts
        from jaxclf.modes import run

        if os.path.exists(os.path.join(self.directory, run_dir.SUMMARY_FILE)):
            logger.info("Teacher: %s has finished; using it", self.directory)
            return
        overrides = teacher_overrides(list(config.hydra.overrides.task), self.overrides)
        logger.info("Teacher: training %s with %s", self.directory, " ".join(overrides))
        quiet_libraries()  # as in jobs
        teacher_config = compose(config_name=config.hydra.job.config_name, overrides=overrides)
        summary = run(teacher_config, self.directory, overrides)
        logger.info("Teacher: test accuracy %.4f", summary["test"]["accuracy"])


def teacher_overrides(task_overrides: list[str], own: Sequence[str] = ()) -> list[str]:
    """The teacher's ``own`` overrides, then the sweep's command-line
    overrides that fix a value for every job (not a sweep, not a study
    group), which win: ``trainer.max_steps=60`` shortens the teacher too."""
    parser = OverridesParser.create()
    fixed = [
        override
        for override in parser.parse_overrides(task_overrides)
        if not override.is_sweep_override() and override.key_or_group not in STUDY_GROUPS
    ]
    fixed_keys = {override.key_or_group for override in fixed}
    kept_own = [override for override in parser.parse_overrides(list(own)) if override.key_or_group not in fixed_keys]
    return [str(override.input_line) for override in [*kept_own, *fixed]]


# The HParams tab's metric columns: what a study compares.
COMPARED_METRICS = (
    "test/accuracy",
    "test/nll",
    "test/ece",
    "eval/accuracy",
    "gap/train_minus_validation_accuracy",
)


class HParamsExperiment(Callback):
    """When a multirun starts, writes one HParams experiment into the sweep
    directory: hyperparameters are the swept keys (command line and the
    sweeper's ``params``) and ``seed``; metrics are ``COMPARED_METRICS``.
    Each job's row is named after its directory (``TensorBoardLogger``)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from jaxclf.event_writer import TensorBoardWriter

        writer = TensorBoardWriter(str(config.hydra.sweep.dir))
        writer.write_experiment(swept_keys(config), COMPARED_METRICS)
        writer.close()


def swept_keys(config: DictConfig) -> list[str]:
    """The keys a multirun sweeps (its command line's and its sweeper's), then ``seed``."""
    sweeper_params = config.hydra.sweeper.get("params") or {}
    lines = [*config.hydra.overrides.task, *(f"{key}={value}" for key, value in sweeper_params.items())]
    keys = [
        str(override.key_or_group)
        for override in OverridesParser.create().parse_overrides(lines)
        if override.is_sweep_override()
    ]
    return list(dict.fromkeys([*keys, "seed"]))
