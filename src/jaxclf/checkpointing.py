"""Orbax checkpoints: the TrainState plus the run's config and callback state.

Each checkpoint holds two items: ``state`` (the TrainState's arrays) and
``meta`` (JSON: the run's resolved config and every stateful callback's
state), so a checkpoint alone is enough to continue a run exactly or to
rebuild its model.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import optax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from jaxclf.errors import ConfigError
from jaxclf.train_state import TrainState, create_train_state

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
QUARANTINE_DIR = "corrupt_checkpoints"

# Keys a resumed run may change: how long it runs, how often it logs,
# evaluates and saves, and where and how fast it reads its data.
RESUMABLE_KEYS = frozenset(
    {
        "mode",
        "trainer.max_steps",
        "trainer.eval_every_steps",
        "trainer.checkpoint_every_steps",
        "trainer.log_every_steps",
        "trainer.steps_per_call",
        "trainer.resume",
        "trainer.max_checkpoints_to_keep",
        "trainer.progress_bar",
        "trainer.reliability_diagrams",
        "trainer.train_eval_examples",
        "optim.total_steps",  # follows trainer.max_steps: the cosine decay stretches
        "data.data_dir",
        "data.manual_dir",
        "data.prefetch",
        "data.workers",
        "data.eval_batch_size",
        "hardware.platform",
        "hardware.distributed",
    }
)


class CheckpointStore:
    """A run's ``checkpoints/`` directory: the last ``max_to_keep`` checkpoints,
    plus the best one by a saved metric when ``best_mode`` (``max``/``min``) is set.

    Orbax writes each checkpoint to a temporary directory and renames it when
    complete, and deletes old checkpoints only after a newer one is committed.
    A checkpoint that cannot be read is moved to ``../corrupt_checkpoints/``
    and the one before it is used.
    """

    def __init__(self, directory: str, max_to_keep: int = 1, read_only: bool = False, best_mode: str | None = None):
        self.directory = os.path.abspath(directory)
        self.best_mode = best_mode
        policies: list[Any] = [checkpoint_managers.LatestN(n=max_to_keep)]
        if best_mode is not None:
            policies.append(
                checkpoint_managers.BestN(
                    get_metric_fn=_metric_value,
                    reverse=best_mode == "min",  # BestN keeps the end of the ascending order
                    n=1,
                    keep_checkpoints_without_metrics=False,
                )
            )
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies),
                # best_fn makes orbax write each checkpoint's metric to disk, so
                # the best survives a restart; the policies above decide.
                best_fn=_metric_value if best_mode else None,
                best_mode=best_mode or "max",
                create=not read_only,
                read_only=read_only,
                enable_async_checkpointing=True,
            ),
        )

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: TrainState, meta: Mapping[str, Any], metric: float | None = None) -> bool:
        """Starts writing ``state`` and ``meta`` in the background (training
        continues); ``metric`` ranks it for ``best_mode``. A step that is
        already saved is left as it is (returns False)."""
        if step in self._manager.all_steps():
            return False
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta)))
        if metric is None and self.best_mode is not None:
            metric = -math.inf if self.best_mode == "max" else math.inf  # never the best
        metrics = None if metric is None else {"value": float(metric)}
        return self._manager.save(step, args=args, metrics=metrics, force=True)

    def restore(self, abstract_state: TrainState, step: int) -> tuple[TrainState, dict[str, Any]]:
        """The state of ``step`` (into the structure, shapes and shardings of
        ``abstract_state``) and its meta."""
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
        )
        return restored["state"], restored["meta"]

    def restore_meta(self, step: int) -> dict[str, Any]:
        return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def restore_latest_good(
        self, abstract_state: TrainState, check_meta: Callable[[Mapping[str, Any]], None] = lambda meta: None
    ) -> tuple[TrainState, dict[str, Any]] | None:
        """The newest checkpoint that reads back whole, or None if there is none.

        ``check_meta`` sees each checkpoint's meta before its arrays are read
        (and may raise, e.g. for another run's config). Each newer checkpoint
        that fails to read is reported and moved aside."""
        for step in reversed(self.steps()):
            try:
                meta = self.restore_meta(step)
            except Exception as error:  # noqa: BLE001 (orbax and tensorstore raise many types for damaged files)
                self._set_aside(step, error)
                continue
            check_meta(meta)
            try:
                return self.restore(abstract_state, step)
            except Exception as error:  # noqa: BLE001
                self._set_aside(step, error)
        return None

    def _set_aside(self, step: int, error: Exception) -> None:
        where = self.quarantine(step)
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        logger.warning(
            "The checkpoint of step %d is unreadable (%s: %s); moved it to %s and trying the one before it",
            step,
            type(error).__name__,
            first_line,
            where,
        )

    def quarantine(self, step: int) -> str:
        """Moves the checkpoint of ``step`` out of the store (never deletes it)."""
        if self._manager.is_saving_in_progress():  # pragma: no cover - restores happen before saves
            raise RuntimeError("cannot move a checkpoint while a save is in progress")
        quarantine = os.path.join(os.path.dirname(self.directory), QUARANTINE_DIR)
        os.makedirs(quarantine, exist_ok=True)
        target, copy = os.path.join(quarantine, str(step)), 1
        while os.path.exists(target):
            target, copy = os.path.join(quarantine, f"{step}.{copy}"), copy + 1
        os.rename(os.path.join(self.directory, str(step)), target)
        self._manager.reload()
        return target

    def wait_until_finished(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def _metric_value(metrics: Mapping[str, float]) -> float:
    return metrics["value"]


def config_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two resolved configs, except
    ``RESUMABLE_KEYS``: ``["optim.learning_rate: 0.003 -> 0.01", ...]``."""
    saved_flat, current_flat = flatten_config(saved), flatten_config(current)
    differences = []
    for key in sorted(set(saved_flat) | set(current_flat)):
        if key in RESUMABLE_KEYS or any(key.startswith(f"{resumable}.") for resumable in RESUMABLE_KEYS):
            continue
        before, after = saved_flat.get(key, "<absent>"), current_flat.get(key, "<absent>")
        if before != after:
            differences.append(f"{key}: {before!r} -> {after!r}")
    return differences


def flatten_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten_config(value, name))
        else:
            flat[name] = value
    return flat


def abstract_train_state(
    model: nn.Module, tx: optax.GradientTransformation, image_shape: tuple[int, ...], sharding: jax.sharding.Sharding
) -> TrainState:
    """The TrainState's structure as ShapeDtypeStructs carrying ``sharding``:
    a restore target that allocates nothing."""
    shapes = jax.eval_shape(functools.partial(create_train_state, model, tx, tuple(image_shape)), jax.random.PRNGKey(0))
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), shapes)


def read_run_config(run_dir: str) -> dict[str, Any]:
    """The resolved config saved in the latest checkpoint of the run in ``run_dir``."""
    directory = os.path.join(run_dir, CHECKPOINT_DIR)
    if not os.path.isdir(directory):
        raise ConfigError(f"{run_dir} is not a jaxclf run directory (it has no {CHECKPOINT_DIR}/)")
    store = CheckpointStore(directory, read_only=True)
    try:
        step = store.latest_step()
        if step is None:
            raise ConfigError(f"{run_dir} holds no checkpoint; train first (mode=fit)")
        return store.restore_meta(step)["config"]
    finally:
        store.close()


def restore_model_from_run(run_dir: str) -> tuple[nn.Module, dict[str, Any], Any]:
    """The model of a finished jaxclf run: ``(module, variables, run config)``.

    The config saved in the run's latest checkpoint rebuilds the module and
    optimizer (the checkpoint holds both states); nothing is written."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(read_run_config(run_dir))
    model = instantiate(cfg.model)
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    abstract = abstract_train_state(model, instantiate(cfg.optim), tuple(cfg.data.image_shape), sharding)
    store = CheckpointStore(os.path.join(run_dir, CHECKPOINT_DIR), read_only=True)
    try:
        state, _ = store.restore(abstract, store.latest_step())
    finally:
        store.close()
    return model, {"params": state.params, **state.model_state}, cfg
