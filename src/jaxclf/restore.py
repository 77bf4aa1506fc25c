"""Reading a trained model back from a run directory: its stored config
(refused unless plain, ``jaxclf.config.stored``), its latest readable
checkpoint, its fitted temperature; for ``mode=evaluate``, ``mode=predict``
and distillation teachers. Nothing is written."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import Any, cast

import flax.linen as nn
import jax
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from jaxclf.config import stored
from jaxclf.errors import ConfigError
from jaxclf.hardware import Hardware, make_mesh
from jaxclf.objectives import Teacher
from jaxclf.run_dir import CHECKPOINT_DIR, SUMMARY_FILE, checkpoint_store, read_json
from jaxclf.train_state import abstract_train_state


def read_config(run_dir: str, trust: bool = False) -> dict[str, Any]:
    """The resolved config saved in the latest checkpoint of the run in
    ``run_dir``, refused unless its model, optimizer and data are jaxclf's own
    with plain values (``jaxclf.config.stored``) or ``trust``."""
    if not os.path.isdir(os.path.join(run_dir, CHECKPOINT_DIR)):
        raise ConfigError(f"{run_dir} is not a jaxclf run directory (it has no {CHECKPOINT_DIR}/)")
    store = checkpoint_store(run_dir, read_only=True)
    try:
        if store.latest_step() is None:
            raise ConfigError(f"{run_dir} holds no checkpoint; train first (mode=fit)")
        latest = store.latest_good_meta()
        if latest is None:
            raise ConfigError(f"no checkpoint in {run_dir} reads back; the run cannot be restored (train it again)")
        return dict(stored.checked(latest[1]["config"], run_dir, trust))
    finally:
        store.close()


def restore_state(run_dir: str, abstract_state: Any) -> Any:
    """The state of the latest readable checkpoint in ``run_dir``, into
    ``abstract_state``'s structure and shardings; the run is only read."""
    store = checkpoint_store(run_dir, read_only=True)
    try:
        if store.latest_step() is None:
            raise ConfigError(f"{run_dir} holds no checkpoint; train first (mode=fit)")
        restored = store.restore_latest_good(abstract_state)
        if restored is None:
            raise ConfigError(f"no checkpoint in {run_dir} reads back; the run cannot be restored (train it again)")
        return restored[0]
    finally:
        store.close()


def restore_model(
    run_dir: str, hardware: Hardware | None = None, trust: bool = False
) -> tuple[nn.Module, dict[str, Any], DictConfig]:
    """The model of the latest checkpoint in ``run_dir`` as it is evaluated
    (its weights' moving average, where it keeps one): ``(module, variables, run config)``,
    on ``hardware``'s mesh (default: the first device), whatever mesh saved it.

    The config saved with it rebuilds the module and optimizer (the
    checkpoint holds both states), if ``read_config`` accepts it with
    ``trust``; nothing is written."""
    cfg = OmegaConf.create(read_config(run_dir, trust))
    model = instantiate(cfg.model)
    hardware = hardware or Hardware(make_mesh(jax.devices()[:1], fsdp=1))
    ema_decay = cfg.get("trainer", {}).get("ema_decay")
    abstract = abstract_train_state(model, instantiate(cfg.optim), tuple(cfg.data.image_shape), ema_decay)
    state = restore_state(run_dir, hardware.placed(abstract))
    return model, {"params": state.evaluated_params, **state.model_state}, cfg


def load_teacher(
    run_dir: str | None, data: Mapping[str, Any], hardware: Hardware | None = None, trust: bool = False
) -> Teacher:
    """The finished run in ``run_dir`` as a distillation teacher on
    ``hardware``'s mesh, if it was trained on the data described by ``data``
    (the student's ``data`` config): the same dataset, classes, image shape
    and normalisation."""
    if not run_dir or not os.path.isdir(run_dir):
        raise ConfigError(
            f"loss.teacher={run_dir!r} is not a run directory; give the directory of a finished jaxclf run"
        )
    model, variables, teacher_cfg = restore_model(run_dir, hardware, trust)
    saved = cast(dict[str, Any], OmegaConf.to_container(teacher_cfg.data))
    for key in ("name", "num_classes", "image_shape", "mean", "std"):
        theirs, ours = saved[key], _plain(data[key])
        if theirs != ours:
            raise ConfigError(
                f"loss.teacher={run_dir!r} was trained with data.{key}={theirs}; this run has data.{key}={ours} "
                "(a teacher must see the student's dataset, classes, image shape and normalisation)"
            )
    return Teacher(apply_fn=model.apply, variables=variables)


def _plain(value: Any) -> Any:
    return OmegaConf.to_object(value) if OmegaConf.is_config(value) else value


def read_temperature(run_dir: str) -> float:
    """The softmax temperature the run in ``run_dir`` fitted (``summary.json``),
    or 1 where it fitted none; a ``ConfigError`` when the stored value is not
    in (0, inf): dividing by it would invert or flatten every prediction."""
    path = os.path.join(run_dir, SUMMARY_FILE)
    fitted = (read_json(path) or {}).get("temperature")
    if fitted is None:
        return 1.0
    if isinstance(fitted, bool) or not isinstance(fitted, (int, float)) or not 0 < fitted < math.inf:
        raise ConfigError(
            f"{path}: temperature={fitted!r} is not valid; a fitted temperature lies in (0, inf) "
            "(remove the key to predict without temperature scaling)"
        )
    return float(fitted)
