"""Orbax checkpoints of the TrainState, saved asynchronously, restored by step."""

from __future__ import annotations

import os
from typing import Optional

import jax
import orbax.checkpoint as ocp

from jaxclf.train_state import TrainState


class CheckpointStore:
    """The run's ``checkpoints/`` directory: the last ``max_to_keep`` states.

    Orbax writes each checkpoint to a temporary directory and renames it when
    complete, so a crash never leaves a partial "latest" checkpoint behind.
    """

    def __init__(self, directory: str, max_to_keep: int):
        self.directory = os.path.abspath(directory)
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True, enable_async_checkpointing=True),
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


def abstract_like(state_shapes: TrainState, sharding: jax.sharding.Sharding) -> TrainState:
    """ShapeDtypeStructs carrying ``sharding``: a restore target that allocates nothing."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), state_shapes)
