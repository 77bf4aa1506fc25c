"""Orbax checkpoints of the TrainState, saved asynchronously, restored by step."""

from __future__ import annotations

import functools
import os
from typing import Any, Optional

import flax.linen as nn
import jax
import optax
import orbax.checkpoint as ocp

from jaxclf.errors import ConfigError
from jaxclf.train_state import TrainState, create_train_state

CHECKPOINT_DIR = "checkpoints"
SAVED_CONFIG = os.path.join(".hydra", "config.yaml")


class CheckpointStore:
    """A run's ``checkpoints/`` directory: the last ``max_to_keep`` states.

    Orbax writes each checkpoint to a temporary directory and renames it when
    complete, so a crash never leaves a partial "latest" checkpoint behind.
    """

    def __init__(self, directory: str, max_to_keep: int = 1, read_only: bool = False):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                create=not read_only,
                read_only=read_only,
                enable_async_checkpointing=True,
            ),
        )

    def latest_step(self) -> Optional[int]:
        return self._manager.latest_step()

    def save(self, step: int, state: TrainState) -> None:
        """Starts writing ``state`` in the background; training continues."""
        self._manager.save(step, args=ocp.args.StandardSave(state), force=True)

    def restore(self, abstract_state: TrainState, step: Optional[int] = None) -> TrainState:
        """Restores into the structure, shapes and shardings of ``abstract_state``."""
        step = self.latest_step() if step is None else step
        return self._manager.restore(step, args=ocp.args.StandardRestore(abstract_state))

    def wait_until_finished(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def abstract_train_state(
    model: nn.Module, tx: optax.GradientTransformation, image_shape: tuple[int, ...], sharding: jax.sharding.Sharding
) -> TrainState:
    """The TrainState's structure as ShapeDtypeStructs carrying ``sharding``:
    a restore target that allocates nothing."""
    shapes = jax.eval_shape(functools.partial(create_train_state, model, tx, tuple(image_shape)), jax.random.PRNGKey(0))
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def restore_model_from_run(run_dir: str) -> tuple[nn.Module, dict[str, Any], Any]:
    """The model of a finished jaxclf run: ``(module, variables, run config)``.

    The run's saved config rebuilds the module and optimizer (the checkpoint
    holds both states); its latest checkpoint is read, never written."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    config_path = os.path.join(run_dir, SAVED_CONFIG)
    if not os.path.exists(config_path):
        raise ConfigError(f"{run_dir} is not a jaxclf run directory ({SAVED_CONFIG} is missing)")
    cfg = OmegaConf.load(config_path)
    store = CheckpointStore(os.path.join(run_dir, CHECKPOINT_DIR), read_only=True)
    try:
        if store.latest_step() is None:
            raise ConfigError(f"{run_dir} holds no checkpoint to restore")
        model = instantiate(cfg.model)
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        abstract = abstract_train_state(model, instantiate(cfg.optim), tuple(cfg.data.image_shape), sharding)
        state = store.restore(abstract)
    finally:
        store.close()
    return model, {"params": state.params, **state.model_state}, cfg
