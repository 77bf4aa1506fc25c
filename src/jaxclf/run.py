"""Config -> objects -> Trainer: the library's entry point, usable without Hydra.

``run(cfg, workdir)`` builds, in order: hardware (mesh) -> data (TFDS splits
in memory, the step-addressed loader) -> model, loss and optimizer (each
``hydra.utils.instantiate``-d from its ``_target_``) -> ``Trainer``; then trains
and tests (``mode=fit``) or evaluates the run's latest checkpoint
(``mode=evaluate``). Results land in ``workdir/summary.json`` (fit) or
``workdir/evaluation.json`` (evaluate).
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from typing import Any

import jax
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf

from jaxclf import hardware as hardware_lib
from jaxclf.callbacks import EarlyStopping
from jaxclf.checkpointing import read_run_config
from jaxclf.config import TrainerConfig
from jaxclf.data.augment import Augmenter
from jaxclf.data.loader import Normalizer, TrainLoader
from jaxclf.data.splits import build_splits, head
from jaxclf.describe import describe_model, format_description
from jaxclf.errors import ConfigError
from jaxclf.train_state import abstract_variables, count_params
from jaxclf.trainer import Trainer

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
FAILURE_FILE = "failure.json"
EVALUATION_FILE = "evaluation.json"
EVAL_SPLITS = ("validation", "test")  # and "train" (its first trainer.train_eval_examples), when > 0


def instantiate(node: Any) -> Any:
    """``hydra.utils.instantiate``, letting a ``ConfigError`` from the target through unwrapped."""
    try:
        return hydra_instantiate(node)
    except InstantiationException as error:
        if isinstance(error.__cause__, ConfigError):
            raise error.__cause__ from None
        raise


def build_trainer(cfg: DictConfig, workdir: str) -> Trainer:
    """Builds every object the config describes and the Trainer around them."""
    if cfg.optim.learning_rate <= 0:
        raise ConfigError(f"optim.learning_rate={cfg.optim.learning_rate} is not valid; it must be positive")
    hardware = hardware_lib.setup(cfg.hardware.platform, cfg.hardware.compute_dtype, cfg.hardware.distributed)
    if cfg.hardware.platform != "cpu":
        hardware_lib.hide_accelerators_from_tensorflow()
    data = cfg.data
    model = instantiate(cfg.model)
    abstract_variables(model, tuple(data.image_shape))  # a model that cannot take the images fails here

    channels = data.image_shape[-1]
    for key in ("mean", "std"):
        if len(data[key]) != channels:
            raise ConfigError(f"data.{key}={list(data[key])} is not valid; it needs one value per channel ({channels})")
    if min(data.std) <= 0:
        raise ConfigError(f"data.std={list(data.std)} is not valid; every value must be positive")
    if cfg.trainer.train_eval_examples < 0:
        raise ConfigError(
            f"trainer.train_eval_examples={cfg.trainer.train_eval_examples} is not valid; "
            "it must be 0 (no evaluation on training data) or more"
        )
    augment = Augmenter(**data.augment)
    splits = build_splits(data, augment)
    train_loader = TrainLoader(splits["train"], data.batch_size, cfg.seed, hardware, data.prefetch, data.workers)
    if cfg.trainer.train_eval_examples:
        splits["train"] = head(splits["train"], cfg.trainer.train_eval_examples)  # read without augmentation
    else:
        del splits["train"]
    stopping = cfg.trainer.early_stopping
    early_stopping = EarlyStopping(stopping.metric, stopping.mode, stopping.patience, stopping.min_delta) if stopping.metric else None

    return Trainer(
        model=model,
        objective=instantiate(cfg.loss),
        optimizer=instantiate(cfg.optim),
        num_classes=data.num_classes,
        hardware=hardware,
        train_loader=train_loader,
        eval_splits=splits,
        image_shape=tuple(data.image_shape),
        normalize=Normalizer(data.mean, data.std),
        eval_batch_size=data.eval_batch_size or data.batch_size,
        workdir=workdir,
        seed=cfg.seed,
        max_steps=cfg.trainer.max_steps,
        eval_every_steps=cfg.trainer.eval_every_steps,
        checkpoint_every_steps=cfg.trainer.checkpoint_every_steps,
        log_every_steps=cfg.trainer.log_every_steps,
        steps_per_call=cfg.trainer.steps_per_call,
        resume=cfg.trainer.resume,
        max_checkpoints_to_keep=cfg.trainer.max_checkpoints_to_keep,
        progress_bar=cfg.trainer.progress_bar,
        reliability_diagrams=cfg.trainer.reliability_diagrams,
        callbacks=[instantiate(callback) for callback in cfg.trainer.callbacks.values()],
        hparams=flat_hparams(cfg),
        config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
        on_nonfinite=cfg.trainer.on_nonfinite,
        early_stopping=early_stopping,
    )


def train_and_evaluate(cfg: DictConfig, workdir: str) -> dict[str, Any]:
    """Trains (resuming if ``workdir`` holds a checkpoint), then evaluates the
    final model (the best one, with early stopping) on validation and test and
    writes ``summary.json``. A finished run is left as it is."""
    start = time.monotonic()
    trainer = build_trainer(cfg, workdir)
    try:
        summary_path = os.path.join(workdir, SUMMARY_FILE)
        state = trainer.initial_state()
        if trainer.is_finished(state) and os.path.exists(summary_path):
            logger.info("%s already finished (step %d); its results are left as they are", workdir, int(state.step))
            with open(summary_path) as file:
                return json.load(file)
        state = trainer.fit(state)
        trained_steps = int(state.step)
        state = trainer.best_state(state)
        summary: dict[str, Any] = evaluate_splits(trainer, state)
        summary.update(
            steps=trained_steps,
            tested_step=int(state.step),
            skipped_steps=int(state.skipped_steps),
            wall_time_s=time.monotonic() - start,
            num_params=count_params(state),
        )
        if trainer.early_stopping:
            summary["early_stopping"] = trainer.early_stopping.state_dict()
        summary["hparams"] = trainer.hparams
        write_json_atomically(summary_path, summary)
    finally:
        trainer.close()
    logger.info(
        "test accuracy %.4f, loss %.4f after %d steps (%.1f s)",
        summary["test"]["accuracy"],
        summary["test"]["loss"],
        summary["steps"],
        summary["wall_time_s"],
    )
    return summary


def evaluate(cfg: DictConfig, workdir: str) -> dict[str, Any]:
    """Evaluates the latest checkpoint in ``workdir`` on validation and test.

    The config saved in the checkpoint decides the model and data;
    ``hardware`` and ``data.data_dir`` come from the current config.
    """
    run_cfg = OmegaConf.create(read_run_config(workdir))
    run_cfg.trainer = OmegaConf.merge(TrainerConfig, run_cfg.trainer)  # a run saved before a trainer key existed gets its default
    run_cfg.hardware = cfg.hardware
    run_cfg.data.data_dir = cfg.data.data_dir
    run_cfg.trainer.resume = True
    trainer = build_trainer(run_cfg, workdir)
    try:
        state = trainer.restore_latest()
        results = evaluate_splits(trainer, state)
        results["steps"] = int(state.step)
        write_json_atomically(os.path.join(workdir, EVALUATION_FILE), results)
    finally:
        trainer.close()
    logger.info("step %d: test accuracy %.4f, loss %.4f", results["steps"], results["test"]["accuracy"], results["test"]["loss"])
    return results


def evaluate_splits(trainer: Trainer, state: Any) -> dict[str, Any]:
    """Metrics on validation, test and (when configured) training data; with
    training data, ``train_minus_validation_accuracy``: the overfitting gap,
    also written to TensorBoard as ``gap/train_minus_validation_accuracy``."""
    results: dict[str, Any] = {split: trainer.evaluate(state, split) for split in EVAL_SPLITS}
    if "train" in trainer.eval_splits:
        results["train"] = trainer.evaluate(state, "train")
        gap = results["train"]["accuracy"] - results["validation"]["accuracy"]
        results["train_minus_validation_accuracy"] = gap
        trainer.writer.write_scalars(int(state.step), {"gap/train_minus_validation_accuracy": gap})
    return results


def describe(cfg: DictConfig) -> dict[str, Any]:
    """Prints the model's parameter overview, parameter count and forward FLOPs per image."""
    image_shape = tuple(cfg.data.image_shape)
    description = describe_model(instantiate(cfg.model), image_shape)
    print(format_description(cfg.model._target_.rsplit(".", 1)[-1], image_shape, description), flush=True)
    return {"num_params": description["num_params"], "flops_per_image": description["flops_per_image"]}


def run(cfg: DictConfig, workdir: str) -> dict[str, Any]:
    """Dispatches on ``cfg.mode``."""
    mode = cfg.mode.value if hasattr(cfg.mode, "value") else str(cfg.mode)
    try:
        if mode == "fit":
            return train_and_evaluate(cfg, workdir)
        if mode == "describe":
            return describe(cfg)
        return evaluate(cfg, workdir)
    finally:
        jax.clear_caches()  # the next job of a multirun in this process compiles afresh


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """Scalar view of the config for TensorBoard's HParams tab: ``{"optim.learning_rate": 0.003, ...}``."""
    flat: dict[str, Any] = {}

    def visit(prefix: str, node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                visit(f"{prefix}.{key}" if prefix else str(key), value)
        elif node is None or isinstance(node, (bool, int, float, str)):
            flat[prefix] = "None" if node is None else node
        else:
            flat[prefix] = str(node)

    container = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    container.get("trainer", {}).pop("callbacks", None)
    visit("", container)
    return flat


def record_failure(workdir: str, error: BaseException) -> None:
    """Writes why a job failed to ``workdir/failure.json`` (a sweep's record)."""
    os.makedirs(workdir, exist_ok=True)
    write_json_atomically(
        os.path.join(workdir, FAILURE_FILE),
        {
            "error": type(error).__name__,
            "message": str(error),
            "traceback": "".join(traceback.format_exception(error)),
        },
    )


def write_json_atomically(path: str, payload: Any) -> None:
    """Writes to a temporary file, then renames: readers never see half a file."""
    temporary = f"{path}.tmp"
    with open(temporary, "w") as file:
        json.dump(payload, file, indent=2)
        file.write("\n")
    os.replace(temporary, path)
