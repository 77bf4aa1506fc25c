"""``validate(cfg)``: what one key's type cannot say -- ranges and
agreements between keys -- and every ``_target_`` node's keys against its
target's signature (callbacks, ``loss.loss_fn``, a user's own model), before
anything is built. jaxclf's own targets are checked against their generated
schemas, so a bad value is named before JAX is imported.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Iterator
from typing import Any

from hydra.utils import get_object
from hydra_zen import builds
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from jaxclf.config.choices import Platform, PositionEmbedding
from jaxclf.config.rules import (
    check_group_size,
    check_num_heads,
    check_patch_size,
    check_ranges,
    check_sincos2d_width,
)
from jaxclf.config.schema import parse_duration
from jaxclf.config.schemas import RANGES, TARGETS, Builds_ResNet, Builds_ViT
from jaxclf.data.folder_layout import class_names
from jaxclf.errors import ConfigError, config_error


def validate(cfg: DictConfig) -> None:
    """Raises a one-line ``ConfigError`` naming the first bad key, its value
    and what is valid: ``check_values``, then ``check_targets``."""
    check_values(cfg)
    check_targets(cfg)


def check_values(cfg: DictConfig) -> None:
    """The values' ranges and agreements, and the keys of jaxclf's own targets.
    Imports no target: ``jaxclf`` runs it before JAX is imported, so a bad
    value is reported at once."""
    _check_positive(
        cfg,
        (
            "optim.learning_rate",
            "trainer.max_steps",
            "trainer.steps_per_call",
            "trainer.accumulate_steps",
            "hardware.mesh.fsdp",
            "hardware.cpu_devices",
            "hardware.local_devices",
            "hardware.num_processes",
            "hardware.distributed_timeout",
            "evaluation.max_examples",
            "predict.top_k",
        ),
    )
    if cfg.trainer.max_time is not None:
        parse_duration(cfg.trainer.max_time)
    if cfg.trainer.ema_decay is not None and not 0 < cfg.trainer.ema_decay < 1:
        raise ConfigError(
            f"trainer.ema_decay={cfg.trainer.ema_decay} is not valid; it must lie in (0, 1), e.g. 0.999 (null: off)"
        )
    _check_data(cfg.data)
    _check_hardware(cfg.hardware)
    _check_classes(cfg)
    if not 0 <= cfg.trainer.max_skipped_fraction <= 1:
        raise ConfigError(
            f"trainer.max_skipped_fraction={cfg.trainer.max_skipped_fraction} is not valid; it must lie in [0, 1]"
        )
    if cfg.seed < 0:
        raise ConfigError(f"seed={cfg.seed} is not valid; it must be 0 or more")
    if cfg.evaluation.train_examples < 0:
        raise ConfigError(
            f"evaluation.train_examples={cfg.evaluation.train_examples} is not valid; "
            "it must be 0 (no evaluation on training data) or more"
        )
    _check_vit(cfg)
    _check_resnet(cfg)
    for path, node in _target_nodes(cfg):
        if node._target_ in TARGETS:
            _check_signature(path, node)
            try:
                check_ranges(RANGES.get(node._target_, {}), node)
            except ValueError as error:
                raise config_error(path, error) from None


def check_targets(cfg: DictConfig) -> None:
    """The keys of every node whose ``_target_`` is not jaxclf's own (a
    user's model, loss or callback) against its signature. Imports the targets."""
    for path, node in _target_nodes(cfg):
        if node._target_ not in TARGETS:
            _check_signature(path, node)


def _check_vit(cfg: DictConfig) -> None:
    """The built-in ViT's sizes agree with each other and with the images."""
    model = cfg.model
    if model.get("_target_") != Builds_ViT._target_:
        return
    try:
        check_num_heads(model.hidden_size, model.num_heads)
        check_patch_size(cfg.data.image_shape, model.patch_size)
        if model.posemb == PositionEmbedding.sincos2d:
            check_sincos2d_width(model.hidden_size)
    except ValueError as error:
        raise config_error("model", error) from None


def _check_resnet(cfg: DictConfig) -> None:
    """The built-in ResNet's BatchNorm groups tile each step's (micro-)batch."""
    model = cfg.model
    if model.get("_target_") != Builds_ResNet._target_ or model.get("batch_norm_group_size") is None:
        return
    try:
        check_group_size(cfg.data.batch_size // cfg.trainer.accumulate_steps, model.batch_norm_group_size)
    except ValueError as error:
        raise config_error("model", error) from None


def _check_positive(cfg: DictConfig, keys: tuple[str, ...]) -> None:
    for key in keys:
        value = OmegaConf.select(cfg, key)
        if value is not None and not (value > 0 and math.isfinite(value)):  # NaN fails `value > 0`
            kind = "a positive integer" if isinstance(value, int) else "positive and finite"
            raise ConfigError(f"{key}={value} is not valid; it must be {kind}")


def _check_classes(cfg: DictConfig) -> None:
    """The model scores every class of the data (one logit for two classes is the sigmoid's case)."""
    outputs, classes = cfg.model.get("num_classes"), cfg.data.num_classes
    if outputs is not None and outputs != classes and not (outputs == 1 and classes == 2):
        raise ConfigError(
            f"model.num_classes={outputs} is not valid; data.{cfg.data.name} has {classes} classes "
            f"(model.num_classes follows data.num_classes unless overridden; 1 only for two classes)"
        )


def _check_hardware(hardware: DictConfig) -> None:
    platform = Platform(hardware.platform).value
    if hardware.cpu_devices is not None and platform != Platform.cpu.value:
        raise ConfigError(
            f"hardware.cpu_devices={hardware.cpu_devices} is not valid with hardware.platform={platform}; "
            "it sets the number of virtual CPU devices (hardware.platform=cpu)"
        )
    if hardware.process_id is not None and not 0 <= hardware.process_id < (hardware.num_processes or 1):
        raise ConfigError(
            f"hardware.process_id={hardware.process_id} is not valid; it must lie in [0, hardware.num_processes) "
            f"(hardware.num_processes={hardware.num_processes})"
        )


def _check_data(data: DictConfig) -> None:
    if data.name == "folder":
        if data.path is None:
            raise ConfigError("data=folder needs data.path=DIR: a folder with one sub-folder of images per class")
        class_names(data.path)  # a one-line error for a folder without class folders
        if not 0 <= data.folder_holdout < 0.5:
            raise ConfigError(f"data.folder_holdout={data.folder_holdout} is not valid; it must lie in [0, 0.5)")
    channels = data.image_shape[-1]
    for key in ("mean", "std"):
        if len(data[key]) != channels:
            raise ConfigError(f"data.{key}={list(data[key])} is not valid; it needs one value per channel ({channels})")
    if min(data.std) <= 0:
        raise ConfigError(f"data.std={list(data.std)} is not valid; every value must be positive")
    if data.name != "synthetic" and (data.splits.validation is None) == (data.validation_holdout == 0):
        raise ConfigError(
            f"data.splits.validation={data.splits.validation} and data.validation_holdout={data.validation_holdout}: "
            "set exactly one (a validation split, or examples to hold out of train)"
        )


def _target_nodes(node: Any, path: str = "") -> Iterator[tuple[str, DictConfig]]:
    """Every node with a ``_target_`` under ``node``, with its dotted path."""
    if not isinstance(node, DictConfig):
        return
    if "_target_" in node:
        yield path, node
    for key in map(str, node):
        yield from _target_nodes(node._get_node(key), f"{path}.{key}" if path else key)


def _imported_target(path: str, node: DictConfig) -> Any:
    try:
        return get_object(node._target_)
    except Exception:  # noqa: BLE001 (Hydra raises several types for a bad path)
        raise ConfigError(
            f"{path}._target_={node._target_} is not an importable object; check the dotted path"
        ) from None


def _check_signature(path: str, node: DictConfig) -> None:
    """The node's keys against its target's parameters: names, types, Enums.
    jaxclf's own targets are checked against their generated schemas
    (``jaxclf.config.schemas``); any other target is imported."""
    keys = [str(key) for key in node if not str(key).startswith("_")]
    schema = TARGETS.get(node._target_)
    if schema is not None:
        parameters = [field.name for field in dataclasses.fields(schema) if not field.name.startswith("_")]
    else:
        target = _imported_target(path, node)
        signature = inspect.signature(target).parameters
        if any(parameter.kind is parameter.VAR_KEYWORD for parameter in signature.values()):
            return  # any keyword goes
        parameters = list(signature)
    for key in keys:
        if key not in parameters:
            raise ConfigError(
                f"{path}.{key} is not a parameter of {node._target_}; its parameters: {', '.join(parameters)}"
            )
    if schema is None:
        schema = builds(target, zen_partial=node.get("_partial_"), **dict.fromkeys(keys, MISSING))
    try:
        OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.masked_copy(node, keys))
    except OmegaConfBaseException as error:
        value = OmegaConf.select(node, str(error.full_key), throw_on_resolution_failure=False)
        reason = str(error).splitlines()[0]
        raise ConfigError(f"{path}.{error.full_key}={value} is not valid for {node._target_}: {reason}") from None
