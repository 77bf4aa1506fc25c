"""Hydra callbacks for multirun studies.

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

logger = logging.getLogger(__name__)

# Groups that choose a sweep's setting: the teacher takes none of them.
STUDY_GROUPS = ("experiment", "labels", "regulariser")


class TrainTeacher(Callback):
    """Trains a jaxclf run into ``directory`` when a multirun starts, unless
    it has finished there already (an interrupted teacher resumes).

    Its config is the primary config with the sweep's fixed command-line
    overrides (a data directory, say) and then ``overrides``; never the
    experiment's or the setting's, nor the swept values."""

    def __init__(self, directory: str, overrides: Sequence[str] = ()):
        self.directory = directory
        self.overrides = list(overrides)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from jaxclf import runs  # JAX loads only when a sweep starts
        from jaxclf.run import run

        if os.path.exists(os.path.join(self.directory, runs.SUMMARY_FILE)):
            logger.info("Teacher: %s has finished; using it", self.directory)
            return
        overrides = teacher_overrides(list(config.hydra.overrides.task)) + self.overrides
        logger.info("Teacher: training %s with %s", self.directory, " ".join(overrides))
        logging.getLogger("absl").setLevel(logging.WARNING)  # as in jobs (conf/config.yaml): orbax and clu are chatty
        teacher_config = compose(config_name=config.hydra.job.config_name, overrides=overrides)
        summary = run(teacher_config, self.directory)
        logger.info("Teacher: test accuracy %.4f", summary["test"]["accuracy"])


def teacher_overrides(task_overrides: list[str]) -> list[str]:
    """The sweep's command-line overrides that fix a value for every job
    (not a sweep, not a study group), as strings ``compose`` takes."""
    kept = []
    for override in OverridesParser.create().parse_overrides(task_overrides):
        if override.is_sweep_override() or override.key_or_group in STUDY_GROUPS:
            continue
        if override.input_line:
            kept.append(override.input_line)
    return kept
