"""The modes a config runs (``mode=``): ``fit`` trains and tests, writing
``summary.json``; ``evaluate`` re-tests a run's latest checkpoint
(``evaluation.json``); ``predict`` writes ``predictions.csv``; ``describe``
prints the model (``jaxclf.describe``). ``jaxclf.build`` builds the objects.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, cast

import jax
import numpy as np
from omegaconf import DictConfig, OmegaConf

from jaxclf import peers, restore, run_dir, run_lock, temperature
from jaxclf import predict as predict_lib
from jaxclf.build import build, build_callbacks, build_classifier, build_data, setup_hardware
from jaxclf.callbacks import EarlyStopping
from jaxclf.callbacks.temperature_scaling import calibrated_results
from jaxclf.config.choices import SplitName
from jaxclf.config.schema import Config, DataConfig, Mode
from jaxclf.config.validation import validate
from jaxclf.console import seconds_since_process_start
from jaxclf.data.loader import DataModule
from jaxclf.describe import describe
from jaxclf.errors import ConfigError
from jaxclf.evaluation import train_minus_validation_accuracy
from jaxclf.hardware import Hardware
from jaxclf.train_state import Classifier, TrainState, count_params
from jaxclf.trainer import Trainer, TrainerConfig

logger = logging.getLogger(__name__)


def train_and_evaluate(
    cfg: DictConfig, workdir: str, hardware: Hardware, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """Trains (resuming if ``workdir`` holds a checkpoint), then tests the
    final model (the best one, when the checkpoint callback monitors a metric)
    and writes ``summary.json``. A finished run is left as it is."""
    start = time.monotonic()
    trainer, classifier, data = build(cfg, workdir, hardware=hardware, overrides=overrides)
    try:
        state = trainer.initial_state(classifier, cfg.seed)
        finished = _finished_summary(trainer, state, workdir)
        if finished is not None:
            return finished
        state = trainer.fit(classifier, data, state)
        summary = _test(trainer, classifier, data, state, cfg)
        summary["wall_time_s"] = time.monotonic() - start
        summary = _write_results(os.path.join(workdir, run_dir.SUMMARY_FILE), summary)
    finally:
        trainer.close()
        data.close()
    logger.info("%s", final_line(summary, workdir))
    return summary


def _write_results(path: str, results: dict[str, Any]) -> dict[str, Any]:
    """Writes ``results`` as strict JSON (process 0): a NaN or Inf becomes
    null, and ``non_finite`` lists where. Returns what was written."""
    results, non_finite = run_dir.without_non_finite(results)
    if non_finite:
        results["non_finite"] = non_finite
    if run_dir.is_primary_process():
        run_dir.write_json_atomically(path, results)
    return results


def final_line(results: Mapping[str, Any], workdir: str | None = None) -> str:
    """A run's last line: test accuracy, NLL and ECE, steps, the time since
    the process started, where the results are, and what went wrong on the way."""

    def number(value: float | None) -> str:
        return "non-finite" if value is None else f"{value:.4f}"

    test = results[SplitName.test.value]
    scores = ", ".join(f"{name} {number(test[key])}" for name, key in _FINAL_SCORES if key in test)
    line = f"test {scores} after {results['steps']} steps; {seconds_since_process_start():.1f} s since launch"
    if workdir is not None:
        line += f"; results in {workdir}"
    if results.get("skipped_steps"):
        line += f"; {results['skipped_steps']} of {results['steps']} updates skipped (non-finite)"
    if results.get("non_finite"):
        line += f"; non-finite results (null in the JSON): {', '.join(results['non_finite'])}"
    return line


_FINAL_SCORES = (("accuracy", "accuracy"), ("NLL", "nll"), ("ECE", "ece"))


def _finished_summary(trainer: Trainer, state: TrainState, workdir: str) -> dict[str, Any] | None:
    """The summary of a run that has nothing left to do (or ran without checkpoints)."""
    summary = run_dir.read_json(os.path.join(workdir, run_dir.SUMMARY_FILE))
    if summary is None or not (trainer.is_finished(state) or trainer.checkpoints.latest_step() is None):
        return None
    logger.info("%s already finished (step %d); its results are left as they are", workdir, summary["steps"])
    return summary


def _test(
    trainer: Trainer, classifier: Classifier, data: DataModule, state: TrainState, cfg: DictConfig
) -> dict[str, Any]:
    """The final evaluation of the best (or final) state, as ``summary.json`` holds it."""
    trained_steps = int(state.step)
    state = trainer.best_state(classifier, state)
    results = trainer.test(classifier, data, state, _final_splits(cfg, data))
    summary: dict[str, Any] = {split: dict(split_results) for split, split_results in results.items()}
    gap = train_minus_validation_accuracy(results)
    if gap is not None:
        summary["train_minus_validation_accuracy"] = gap
    summary.update(
        steps=trained_steps,
        tested_step=int(state.step),
        skipped_steps=int(state.skipped_steps),
        num_params=count_params(state),
    )
    stopping = next((callback for callback in trainer.callbacks if isinstance(callback, EarlyStopping)), None)
    if stopping is not None:
        summary["early_stopping"] = stopping.state_dict()
    summary.update(calibrated_results(trainer.logged_metrics))
    summary["hparams"] = trainer.run_config.hparams() if trainer.run_config else {}
    return summary


def evaluate(cfg: DictConfig, workdir: str, hardware: Hardware) -> dict[str, Any]:
    """Re-tests the latest checkpoint of the run in ``evaluation.run_dir``
    (default: ``workdir``), which is only read, on ``evaluation.splits``, and
    writes ``evaluation.json`` to ``workdir``."""
    source = cfg.evaluation.run_dir or workdir
    run_cfg = _evaluated_run_config(cfg, source)
    classifier = build_classifier(run_cfg, hardware)
    data = build_data(run_cfg, hardware, train=False)
    trainer = Trainer(TrainerConfig(), hardware, build_callbacks(cfg), workdir)
    try:
        state = restore.restore_state(source, hardware.placed(classifier.abstract_state()))
        results: dict[str, Any] = {
            split: dict(split_results)
            for split, split_results in trainer.test(classifier, data, state, _final_splits(cfg, data)).items()
        }
        results["steps"] = int(state.step)
        results = _write_results(os.path.join(workdir, run_dir.EVALUATION_FILE), results)
    finally:
        trainer.close()
        data.close()
    logger.info("%s", final_line(results, workdir))
    return results


def predict(cfg: DictConfig, workdir: str, hardware: Hardware) -> dict[str, Any]:
    """Writes ``predictions.csv`` to ``workdir``: the predictions of the latest
    checkpoint of the run in ``evaluation.run_dir`` (default: ``workdir``) for
    ``predict.inputs``."""
    source = cfg.evaluation.run_dir or workdir
    run_cfg = _evaluated_run_config(cfg, source)
    fitted = restore.read_temperature(source)
    classifier = build_classifier(run_cfg, hardware)
    inputs = _prediction_inputs(run_cfg, predict_lib.input_values(cfg.predict.inputs), hardware)
    state = restore.restore_state(source, hardware.placed(classifier.abstract_state()))
    batch_size = run_cfg.data.eval_batch_size or run_cfg.data.batch_size
    predictor = predict_lib.Predictor(classifier, hardware, batch_size)
    outputs = [predictor(state, item.split) for item in inputs]
    names = [name for item in inputs for name in item.names]
    log_probs, labels = (np.concatenate([output[index] for output in outputs]) for index in (0, 1))
    probs = temperature.calibrated(log_probs, fitted)  # the run's temperature scaling, where it has one
    path = os.path.join(workdir, predict_lib.PREDICTIONS_FILE)
    if run_dir.is_primary_process():
        predict_lib.write_predictions(path, names, labels, probs, cfg.predict.top_k)
    logger.info("%d predictions of the checkpoint of step %d written to %s", len(names), int(state.step), path)
    return {"predictions": len(names), "steps": int(state.step)}


def _prediction_inputs(run_cfg: DictConfig, values: list[str], hardware: Hardware) -> list[predict_lib.Inputs]:
    """The image files and splits ``values`` name, in their order (files first)."""
    inputs = []
    paths = predict_lib.image_paths(values)
    if paths:
        inputs.append(predict_lib.read_images(paths, run_cfg.data.image_shape))
    split_names = [value for value in values if predict_lib.is_split_name(value)]
    if split_names:
        data = build_data(run_cfg, hardware, train=False)
        inputs += [predict_lib.split_inputs(name, data.eval_splits[name]) for name in split_names]
        data.close()
    if not any(item.names for item in inputs):
        raise ConfigError(f"predict.inputs={values}: nothing to predict (no readable image of the right shape)")
    return inputs


def _evaluated_run_config(cfg: DictConfig, workdir: str) -> DictConfig:
    """``cfg`` with the model, optimizer and data of the run saved in
    ``workdir`` (its data location stays ``cfg``'s; data keys the run predates
    get their defaults). The loss does not matter to evaluation."""
    saved = OmegaConf.create(restore.read_config(workdir, trust=cfg.evaluation.trust_run_config))
    run_cfg = cfg.copy()
    run_cfg.model, run_cfg.optim = saved.model, saved.optim
    run_cfg.loss = OmegaConf.create({"_target_": "jaxclf.objectives.Objective"})
    run_cfg.trainer.ema_decay = saved.trainer.get("ema_decay")  # the state holds a moving average, or not
    run_cfg.data = OmegaConf.merge(
        OmegaConf.structured(DataConfig), saved.data, {"data_dir": cfg.data.data_dir, "manual_dir": cfg.data.manual_dir}
    )
    return run_cfg


def _final_splits(cfg: DictConfig, data: DataModule) -> list[str]:
    """The splits the final evaluation scores (``evaluation.splits`` that the data has)."""
    return [SplitName(split).value for split in cfg.evaluation.splits if SplitName(split).value in data.eval_splits]


def _processes_agreed(cfg: DictConfig, workdir: str) -> contextlib.AbstractContextManager[None]:
    """With several processes: they agree on the config and the run directory,
    then watch each other while the run lasts (``jaxclf.peers``)."""
    if jax.process_count() == 1:
        return contextlib.nullcontext()
    values = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    peers.agree(peers.compared_config(run_dir.flatten(values), workdir), cfg.hardware.distributed_timeout)
    return peers.watched(cfg.hardware.distributed_timeout)


def run(cfg: DictConfig, workdir: str, overrides: Sequence[str] = ()) -> Mapping[str, Any]:
    """Validates ``cfg``, then runs its mode (``execute``). For a config
    built without Hydra, it is typed against the schema first."""
    if OmegaConf.get_type(cfg) is not Config:
        cfg = cast(DictConfig, OmegaConf.merge(OmegaConf.structured(Config), cfg))
    validate(cfg)
    return execute(cfg, workdir, overrides)


def execute(cfg: DictConfig, workdir: str, overrides: Sequence[str] = ()) -> Mapping[str, Any]:
    """Dispatches a validated ``cfg`` on ``cfg.mode``; training and evaluation
    hold ``workdir``'s lock (one process per run directory). ``overrides``:
    the command line's, which name the run in TensorBoard."""
    try:
        if cfg.mode == Mode.describe:
            return describe(cfg)
        run_dir.check_writable(workdir)
        hardware = setup_hardware(cfg)  # first: the process index says who holds the lock
        with _processes_agreed(cfg, workdir), run_lock.held(workdir, take=run_dir.is_primary_process()):
            if cfg.mode == Mode.fit:
                return train_and_evaluate(cfg, workdir, hardware, overrides)
            if cfg.mode == Mode.predict:
                return predict(cfg, workdir, hardware)
            return evaluate(cfg, workdir, hardware)
    finally:
        jax.clear_caches()  # the next job of a multirun in this process compiles afresh
