"""Config -> objects: everything a config describes, built in order.

hardware (the mesh) -> the classifier (model, optimizer and objective, each
``hydra.utils.instantiate``-d from its ``_target_``; a distillation teacher
restored from its run) -> data (TFDS splits, the step-addressed loader) ->
callbacks (the ``callbacks`` group) -> the
``Trainer``. A bad value fails in the first object that holds it, with one
line that names its config key. ``jaxclf.modes`` runs what is built.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, TypeVar, cast

import flax.linen as nn
from hydra.errors import InstantiationException
from hydra.utils import instantiate as hydra_instantiate
from omegaconf import DictConfig, OmegaConf

from jaxclf import hardware as hardware_lib
from jaxclf import restore, run_dir
from jaxclf.callbacks import Callback
from jaxclf.config.schema import DataConfig, resumable_keys_of
from jaxclf.data.loader import DataModule, Normalizer, TrainLoader
from jaxclf.data.splits import build_splits, head
from jaxclf.errors import ConfigError, config_error
from jaxclf.hardware import Hardware, HardwareConfig
from jaxclf.train_state import Classifier, abstract_variables
from jaxclf.trainer import Trainer, TrainerConfig, check_micro_batches

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


def setup_hardware(cfg: DictConfig) -> Hardware:
    """The mesh of ``cfg.hardware``. Processes other than 0 log warnings only:
    process 0 speaks for the run."""
    hardware = hardware_lib.setup(typed(cfg.hardware, HardwareConfig))
    if not run_dir.is_primary_process():
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
        teacher["teacher"] = restore.load_teacher(
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
    run_config = run_dir.RunConfig(values, resumable_keys_of(cfg), tuple(overrides))
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
