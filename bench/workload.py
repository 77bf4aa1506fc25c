"""What the benchmarks share: the composed config, random batches of its
shapes, and a classifier's jitted training step as the Trainer runs it."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import jax
import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from jaxclf.build import build_classifier
from jaxclf.metrics import TrainMetrics

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"


def seconds(fn: Callable[[], object]) -> float:
    """Wall seconds of one call of ``fn``."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def composed(overrides: Sequence[str] = ()) -> DictConfig:
    """``conf/`` composed with ``overrides``, as ``launch.py`` would."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def random_batch(cfg: DictConfig, batch_size: int, leading: tuple[int, ...] = (), pixels: bool = True) -> dict:
    """A device batch of ``cfg``'s image shape and classes: uint8 pixels, or
    standard-normal floats (``pixels=False``); ``leading`` axes before the batch's."""
    rng = np.random.default_rng(0)
    shape = (*leading, batch_size, *cfg.data.image_shape)
    images = rng.integers(0, 256, size=shape, dtype=np.uint8) if pixels else rng.standard_normal(shape, np.float32)
    labels = rng.integers(0, cfg.data.num_classes, size=shape[: len(leading) + 1], dtype=np.int32)
    return {"image": jax.device_put(images), "label": jax.device_put(labels)}


class TrainingStep:
    """``cfg``'s classifier and its jitted, donating ``train_steps`` (what the
    Trainer calls), holding the state and metrics from call to call."""

    def __init__(self, cfg: DictConfig):
        self.classifier = build_classifier(cfg)
        self.state = jax.jit(self.classifier.init)(jax.random.PRNGKey(0))
        self.metrics = jax.device_put(TrainMetrics.empty())
        self.jitted = jax.jit(self.classifier.train_steps, donate_argnums=(0, 1))

    def __call__(self, batches: dict) -> None:
        self.state, self.metrics = self.jitted(self.state, self.metrics, batches, self.classifier.objective)

    def lower(self, batches: dict) -> jax.stages.Lowered:
        return self.jitted.lower(self.state, self.metrics, batches, self.classifier.objective)
