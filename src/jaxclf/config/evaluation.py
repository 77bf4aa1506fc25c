"""The final evaluation's and ``mode=predict``'s settings (``evaluation`` and
``predict`` in the config): plain data, cheap to import, so a bad value is reported before JAX's libraries load."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from jaxclf.config.data import SplitName
from jaxclf.config.resumable import resumable


def _final_splits() -> list[SplitName]:
    return [SplitName.validation, SplitName.test, SplitName.train]


@dataclasses.dataclass
class EvaluationConfig:
    """The final evaluation, after training (``evaluation`` in the config; all of it may change on resume)."""

    splits: list[SplitName] = resumable(default_factory=_final_splits)
    # The train split is scored without augmentation on its first this many
    # examples (0 leaves it out): the overfitting gap in summary.json.
    train_examples: int = resumable(10000)
    # Every evaluation, during training and after, scores only the first this
    # many examples of each split (null: all of them; debug=limit_batches).
    max_examples: Optional[int] = resumable(None)
    # Top-5 accuracy is reported only with more classes than this (with 10,
    # it is about 1.0 and says nothing).
    top5_min_classes: int = resumable(10)
    # mode=evaluate: the run to re-test (null: this run directory). It is only
    # read, so a finished run on read-only storage can be evaluated from elsewhere.
    run_dir: str | None = resumable(None)
    # A run's stored config rebuilds only jaxclf's own models, optimizers and
    # datasets, from plain values (jaxclf.config.stored); true rebuilds
    # whatever the run names (evaluation.run_dir, loss.teacher): trusted code.
    trust_run_config: bool = resumable(False)


@dataclasses.dataclass
class PredictConfig:
    """``predict`` in the config (all of it may change on resume)."""

    # Image files, folders of images, or split names; one value or a list.
    inputs: Any = resumable("test")
    top_k: int = resumable(5)  # classes listed per image, most probable first
