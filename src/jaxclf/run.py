"""Config -> objects -> Trainer: the one place that wires objects together.

``run(cfg, workdir)`` validates the config, then builds, in order: hardware
(mesh) -> data (TFDS splits, the step-addressed loader) -> the classifier
(model, objective and optimizer, each ``hydra.utils.instantiate``-d from its
``_target_``) -> callbacks (the ``callbacks`` group) -> ``Trainer``; then
trains and tests (``mode=fit``), re-tests the run's latest checkpoint
(``mode=evaluate``) or describes the model (``mode=describe``). Results land
in ``workdir``: ``summary.json`` (fit) or ``evaluation.json`` (evaluate).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar, cast

import flax.linen as nn
import jax
import numpy as np
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf

from jaxclf import hardware as hardware_lib
from jaxclf import peers, run_lock, runs, temperature
from jaxclf import predict as predict_lib
from jaxclf.callbacks import Callback, EarlyStopping, ModelCheckpoint
from jaxclf.config import Config, Mode, resumable_keys_of, validate
from jaxclf.console import seconds_since_process_start
from jaxclf.data.config import DataConfig, SplitName
from jaxclf.data.loader import DataModule, Normalizer, TrainLoader
from jaxclf.data.splits import build_splits, head
from jaxclf.describe import bytes_per_device, describe_model, format_description, format_memory
from jaxclf.errors import ConfigError, config_error
from jaxclf.evaluation import train_minus_validation_accuracy
from jaxclf.hardware import Hardware, HardwareConfig
from jaxclf.tensorboard_logger import TensorBoardLogger
from jaxclf.train_state import Classifier, TrainState, abstract_train_state, abstract_variables, count_params
from jaxclf.trainer import Trainer, TrainerConfig, check_micro_batches

logger = logging.getLogger(__name__)
CallbackType = TypeVar("CallbackType", bound=Callback)
SchemaType = TypeVar("SchemaType")


def typed(node: DictConfig, schema: type[SchemaType]) -> SchemaType:
    """A config node as its schema's dataclass: what a library user would construct."""
    value = OmegaConf.to_object(node)
    if not isinstance(value, schema):
        raise TypeError(f"expected a {schema.__name__} config, got {type(value).__name__}")
    return value


def instantiate(node: Any, path: str, **objects: Any) -> Any:
    """``hydra.utils.instantiate`` of the node at config ``path``, with
    ``objects`` passed as they are (Hydra would turn a dataclass into a
    config); a ``ValueError`` from the target becomes a one-line ``ConfigError``."""
    try:
        if objects:
            return hydra_instantiate(node, _partial_=True)(**objects)
        return hydra_instantiate(node)
    except InstantiationException as error:
        if isinstance(error.__cause__, ValueError):
            raise config_error(path, error.__cause__) from None
        raise
    except ValueError as error:
        raise config_error(path, error) from None


# -- builders ---------------------------------------------------------------------


def setup_hardware(cfg: DictConfig) -> Hardware:
    """The mesh of ``cfg.hardware``. Processes other than 0 log warnings only:
    process 0 speaks for the run."""
    hardware = hardware_lib.setup(typed(cfg.hardware, HardwareConfig))
    if not runs.is_primary_process():
        logging.getLogger("jaxclf").setLevel(logging.WARNING)
    return hardware


def build_model(cfg: DictConfig) -> nn.Module:
    """The model, traced from shapes alone: one that cannot take the images fails here."""
    model = instantiate(cfg.model, "model")
    try:
        abstract_variables(model, tuple(cfg.data.image_shape))
    except ValueError as error:
        raise config_error("model", error) from None
    return model


def build_classifier(cfg: DictConfig, hardware: Hardware | None = None) -> Classifier:
    """The model, optimizer and objective of ``cfg`` (a distillation teacher restored onto ``hardware``)."""
    teacher = {}
    if "teacher" in cfg.loss:
        teacher["teacher"] = runs.load_teacher(
            cfg.loss.teacher, cfg.data, hardware, trust=cfg.evaluation.trust_run_config
        )
    return Classifier(
        model=build_model(cfg),
        optimizer=instantiate(cfg.optim, "optim"),
        objective=instantiate(cfg.loss, "loss", **teacher),
        image_shape=tuple(cfg.data.image_shape),
        normalize=Normalizer(cfg.data.mean, cfg.data.std),
        ema_decay=cfg.trainer.ema_decay,
    )


def build_data(cfg: DictConfig, hardware: Hardware, train: bool = True) -> DataModule:
    """The splits of ``cfg.data``; the training loader when ``train``; the
    training split evaluated as its first ``evaluation.train_examples``
    examples; each evaluated split cut to ``evaluation.max_examples``."""
    data = typed(cfg.data, DataConfig)
    splits = build_splits(data)
    loader = (
        TrainLoader(splits["train"], data.batch_size, cfg.seed, hardware, data.prefetch, data.workers)
        if train
        else None
    )
    if cfg.evaluation.train_examples:
        splits["train"] = head(splits["train"], cfg.evaluation.train_examples)  # read without augmentation
    else:
        del splits["train"]
    if cfg.evaluation.max_examples:
        splits = {name: head(split, cfg.evaluation.max_examples) for name, split in splits.items()}
    eval_batch_size = data.eval_batch_size or data.batch_size
    return DataModule(loader, splits, eval_batch_size, data.num_classes, cfg.evaluation.top5_min_classes)


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    """The ``callbacks`` group's entries, each saving its state under its name (null entries are off)."""
    callbacks = []
    for name, node in cfg.callbacks.items():
        if node is not None:
            if "_target_" not in node:
                raise ConfigError(
                    f"callbacks.{name} has no _target_; set callbacks.{name}._target_, or choose a callbacks "
                    "option that includes it (callbacks=default)"
                )
            callback = instantiate(node, f"callbacks.{name}")
            callback.state_key = str(name)
            callbacks.append(callback)
    return callbacks


def build_trainer(
    cfg: DictConfig, workdir: str, hardware: Hardware, callbacks: Sequence[Callback], overrides: Sequence[str] = ()
) -> Trainer:
    """The Trainer of ``cfg`` in ``workdir``, knowing the run's config and the
    command-line ``overrides`` that made it (for TensorBoard)."""
    values = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    run_config = runs.RunConfig(values, resumable_keys_of(cfg), tuple(overrides))
    config = typed(cfg.trainer, TrainerConfig)
    check_micro_batches(cfg.data.batch_size, config.accumulate_steps, hardware.num_devices)  # before writing
    return Trainer(config, hardware, callbacks, workdir, run_config)


def build(
    cfg: DictConfig,
    workdir: str,
    extra_callbacks: Sequence[Callback] = (),
    hardware: Hardware | None = None,
    overrides: Sequence[str] = (),
) -> tuple[Trainer, Classifier, DataModule]:
    """Everything ``cfg`` describes for training in ``workdir``: the Trainer
    (with the ``callbacks`` group's callbacks, then ``extra_callbacks``), what
    it trains and on what data, on ``hardware`` (set up here if not given).
    Built in the order of the docstring above, so that a bad value fails in
    the first object that holds it."""
    hardware = hardware or setup_hardware(cfg)
    classifier = build_classifier(cfg, hardware)
    data = build_data(cfg, hardware)
    callbacks = [*build_callbacks(cfg), *extra_callbacks]
    return build_trainer(cfg, workdir, hardware, callbacks, overrides), classifier, data


def find_callback(callbacks: Sequence[Callback], kind: type[CallbackType]) -> CallbackType | None:
    """The first callback of ``kind``, if any."""
    return next((callback for callback in callbacks if isinstance(callback, kind)), None)


# -- modes ------------------------------------------------------------------------


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
        summary = _write_results(os.path.join(workdir, runs.SUMMARY_FILE), summary)
    finally:
        trainer.close()
        data.close()
    logger.info("%s", final_line(summary, workdir))
    return summary


def _write_results(path: str, results: dict[str, Any]) -> dict[str, Any]:
    """Writes ``results`` as strict JSON (process 0): a NaN or Inf becomes
    null, and ``non_finite`` lists where. Returns what was written."""
    results, non_finite = runs.without_non_finite(results)
    if non_finite:
        results["non_finite"] = non_finite
    if runs.is_primary_process():
        runs.write_json_atomically(path, results)
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
    summary = runs.read_json(os.path.join(workdir, runs.SUMMARY_FILE))
    if summary is None or not (trainer.is_finished(state) or trainer.checkpoints.latest_step() is None):
        return None
    logger.info("%s already finished (step %d); its results are left as they are", workdir, summary["steps"])
    return summary


def _test(
    trainer: Trainer, classifier: Classifier, data: DataModule, state: TrainState, cfg: DictConfig
) -> dict[str, Any]:
    """The final evaluation of the best (or final) state, as ``summary.json`` holds it."""
    trained_steps = int(state.step)
    state = _tested_state(trainer, classifier, state)
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
    stopping = find_callback(trainer.callbacks, EarlyStopping)
    if stopping is not None:
        summary["early_stopping"] = stopping.state_dict()
    splits = {SplitName.validation.value, SplitName.test.value}
    if cfg.evaluation.temperature_scaling and splits <= set(results):
        summary.update(_temperature_scaled(trainer, state))
    summary["hparams"] = trainer.run_config.hparams() if trainer.run_config else {}
    return summary


def _temperature_scaled(trainer: Trainer, state: TrainState) -> dict[str, Any]:
    """The temperature fitted on the validation split and the test scores of
    ``softmax(z / T)`` (``temperature``, ``test_calibrated`` in the summary,
    ``test_calibrated/*`` in TensorBoard)."""
    temperature_value = temperature.fit_temperature(*trainer.predict(state, SplitName.validation.value))
    log_probs, labels = trainer.predict(state, SplitName.test.value)
    test_calibrated = temperature.scores(temperature.calibrated(log_probs, temperature_value), labels)
    logger.info(
        "Temperature scaling: T = %.3f%s; test ECE %.4f",
        temperature_value,
        " (no validation mistake to fit it on)" if temperature_value == 1.0 else "",
        test_calibrated["ece"],
    )
    tensorboard = find_callback(trainer.callbacks, TensorBoardLogger)
    if tensorboard is not None and (writer := tensorboard.writer(trainer)):
        scalars = {f"test_calibrated/{name}": value for name, value in test_calibrated.items()}
        writer.write_scalars(int(state.step), {**scalars, "test_calibrated/temperature": temperature_value})
        writer.flush()
    return {"temperature": temperature_value, "test_calibrated": test_calibrated}


def _tested_state(trainer: Trainer, classifier: Classifier, state: TrainState) -> TrainState:
    """The best checkpoint's state when the checkpoint callback monitors a metric, else ``state``."""
    checkpoint = find_callback(trainer.callbacks, ModelCheckpoint)
    if checkpoint is None or checkpoint.best_step is None or checkpoint.best_step == int(state.step):
        return state
    logger.info(
        "Testing the best checkpoint: step %d, %s %s %.4f",
        checkpoint.best_step,
        checkpoint.split,
        checkpoint.monitor,
        checkpoint.best_value,
    )
    return trainer.restore(classifier, checkpoint.best_step)


def evaluate(cfg: DictConfig, workdir: str, hardware: Hardware) -> dict[str, Any]:
    """Re-tests the latest checkpoint of the run in ``evaluation.run_dir``
    (default: ``workdir``), which is only read, on ``evaluation.splits``, and
    writes ``evaluation.json`` to ``workdir``."""
    run_dir = cfg.evaluation.run_dir or workdir
    run_cfg = _evaluated_run_config(cfg, run_dir)
    classifier = build_classifier(run_cfg, hardware)
    data = build_data(run_cfg, hardware, train=False)
    trainer = Trainer(TrainerConfig(), hardware, build_callbacks(cfg), workdir)
    try:
        state = runs.restore_state(run_dir, hardware.placed(classifier.abstract_state()))
        results: dict[str, Any] = {
            split: dict(split_results)
            for split, split_results in trainer.test(classifier, data, state, _final_splits(cfg, data)).items()
        }
        results["steps"] = int(state.step)
        results = _write_results(os.path.join(workdir, runs.EVALUATION_FILE), results)
    finally:
        trainer.close()
        data.close()
    logger.info("%s", final_line(results, workdir))
    return results


def predict(cfg: DictConfig, workdir: str, hardware: Hardware) -> dict[str, Any]:
    """Writes ``predictions.csv`` to ``workdir``: the predictions of the latest
    checkpoint of the run in ``evaluation.run_dir`` (default: ``workdir``) for
    ``predict.inputs``."""
    run_dir = cfg.evaluation.run_dir or workdir
    run_cfg = _evaluated_run_config(cfg, run_dir)
    fitted = runs.read_temperature(run_dir)
    classifier = build_classifier(run_cfg, hardware)
    inputs = _prediction_inputs(run_cfg, predict_lib.input_values(cfg.predict.inputs), hardware)
    state = runs.restore_state(run_dir, hardware.placed(classifier.abstract_state()))
    batch_size = run_cfg.data.eval_batch_size or run_cfg.data.batch_size
    predictor = predict_lib.Predictor(classifier, hardware, batch_size)
    outputs = [predictor(state, item.split) for item in inputs]
    names = [name for item in inputs for name in item.names]
    log_probs, labels = (np.concatenate([output[index] for output in outputs]) for index in (0, 1))
    probs = temperature.calibrated(log_probs, fitted)  # the run's temperature scaling, where it has one
    path = os.path.join(workdir, predict_lib.PREDICTIONS_FILE)
    if runs.is_primary_process():
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
    saved = OmegaConf.create(runs.read_config(workdir, trust=cfg.evaluation.trust_run_config))
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


def describe(cfg: DictConfig) -> dict[str, Any]:
    """Prints the model's parameter overview, parameter count, forward FLOPs
    per image, and the bytes of parameters and optimizer state per device on
    the configured mesh."""
    image_shape = tuple(cfg.data.image_shape)
    hardware = setup_hardware(cfg)
    model, optimizer = instantiate(cfg.model, "model"), instantiate(cfg.optim, "optim")
    description = describe_model(model, image_shape)
    memory = bytes_per_device(abstract_train_state(model, optimizer, image_shape), hardware)
    print(format_description(cfg.model._target_.rsplit(".", 1)[-1], image_shape, description), flush=True)
    print(format_memory(memory, dict(hardware.mesh.shape)), flush=True)
    return {
        "num_params": description["num_params"],
        "flops_per_image": description["flops_per_image"],
        "bytes_per_device": memory,
    }


def _processes_agreed(cfg: DictConfig, workdir: str) -> contextlib.AbstractContextManager[None]:
    """With several processes: they agree on the config and the run directory,
    then watch each other while the run lasts (``jaxclf.peers``)."""
    if jax.process_count() == 1:
        return contextlib.nullcontext()
    values = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    peers.agree(peers.compared_config(runs.flatten(values), workdir), cfg.hardware.distributed_timeout)
    return peers.watched(cfg.hardware.distributed_timeout)


def run(cfg: DictConfig, workdir: str, overrides: Sequence[str] = ()) -> Mapping[str, Any]:
    """Validates ``cfg`` and dispatches on ``cfg.mode``; training and
    evaluation hold ``workdir``'s lock (one process per run directory).
    ``overrides``: the command line's, which name the run in TensorBoard."""
    if OmegaConf.get_type(cfg) is not Config:
        cfg = cast(DictConfig, OmegaConf.merge(OmegaConf.structured(Config), cfg))  # built without Hydra: typed here
    validate(cfg)
    try:
        if cfg.mode == Mode.describe:
            return describe(cfg)
        runs.check_writable(workdir)
        hardware = setup_hardware(cfg)  # first: the process index says who holds the lock
        with _processes_agreed(cfg, workdir), run_lock.held(workdir, take=runs.is_primary_process()):
            if cfg.mode == Mode.fit:
                return train_and_evaluate(cfg, workdir, hardware, overrides)
            if cfg.mode == Mode.predict:
                return predict(cfg, workdir, hardware)
            return evaluate(cfg, workdir, hardware)
    finally:
        jax.clear_caches()  # the next job of a multirun in this process compiles afresh
