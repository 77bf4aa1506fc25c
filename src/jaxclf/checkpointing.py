"""Orbax checkpoint storage: any pytree plus a JSON ``meta`` item, by step.

Storage knows nothing of models or losses: each checkpoint holds two items,
``state`` (a pytree of arrays, restored into the structure, shapes and
shardings of an abstract tree) and ``meta`` (JSON). Which checkpoints are kept
is a ``Retention`` (the latest N, the best N by a saved metric).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from orbax.checkpoint import checkpoint_managers

from jaxclf.errors import StorageError

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Retention:
    """Which checkpoints a store keeps: the ``latest`` N (None: every one) and,
    when ``best`` > 0, the ``best`` N by the metric saved with them, where
    higher is better with ``mode="max"`` and lower with ``mode="min"``."""

    latest: int | None = None
    best: int = 0
    mode: str = "max"


class CheckpointStore:
    """A directory of checkpoints, one subdirectory per step.

    Orbax writes each checkpoint to a temporary directory and renames it when
    complete, and deletes old checkpoints only after a newer one is committed.
    A checkpoint that cannot be read is moved to ``quarantine`` (never
    deleted, by process 0 alone) and the one before it is used.
    """

    def __init__(
        self, directory: str, retention: Retention = Retention(), quarantine: str | None = None, read_only: bool = False
    ):
        self.directory = os.path.abspath(directory)
        self.retention = retention
        self.read_only = read_only
        self.failed = False  # a save failed: nothing more is written or waited for
        self.quarantine_directory = quarantine or f"{self.directory}_quarantine"
        policies: list[Any] = [checkpoint_managers.LatestN(n=retention.latest)] if retention.latest else []
        if retention.best:
            policies.append(
                checkpoint_managers.BestN(
                    get_metric_fn=_metric_value,
                    reverse=retention.mode == "min",  # BestN keeps the end of the ascending order
                    n=retention.best,
                    keep_checkpoints_without_metrics=False,
                )
            )
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                preservation_policy=checkpoint_managers.AnyPreservationPolicy(policies) if policies else None,
                # best_fn makes orbax write each checkpoint's metric to disk, so
                # the best survives a restart; the policies above decide.
                best_fn=_metric_value if retention.best else None,
                best_mode=retention.mode,
                create=not read_only,
                read_only=read_only,
                enable_async_checkpointing=True,
            ),
        )

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, meta: Mapping[str, Any], metric: float | None = None) -> bool:
        """Starts writing ``state`` and ``meta`` in the background (training
        continues); ``metric`` ranks it for the best-N retention (a checkpoint
        saved without one is never the best). A step that is already saved is
        left as it is (returns False)."""
        if step in self._manager.all_steps():
            return False
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(dict(meta)))
        metrics = None
        if self.retention.best:
            never_best = -math.inf if self.retention.mode == "max" else math.inf
            metrics = {"value": float(never_best if metric is None else metric)}
        with self._reporting_failures():
            return self._manager.save(step, args=args, metrics=metrics, force=True)

    @contextlib.contextmanager
    def _reporting_failures(self) -> Iterator[None]:
        """A failed save (here or in orbax's background threads) becomes one ``StorageError`` line."""
        if self.failed:
            raise StorageError(f"an earlier save in {self.directory} failed")
        try:
            yield
        except Exception as error:  # noqa: BLE001 (orbax re-raises its threads' errors of any type)
            self.failed = True
            cause = error
            while cause.__cause__ is not None or cause.__context__ is not None:  # the OS error at the root
                cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
            first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
            latest = self._manager.latest_step()
            raise StorageError(
                f"saving a checkpoint in {self.directory} failed ({type(cause).__name__}: {first_line}); "
                f"the committed checkpoints are intact (latest: {latest if latest is not None else 'none'}); "
                "fix the cause and run the same command to resume"
            ) from None

    def restore(self, abstract_state: Any, step: int) -> tuple[Any, dict[str, Any]]:
        """The state of ``step`` (into the structure, shapes and shardings of
        ``abstract_state``) and its meta."""
        restored = self._manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore())
        )
        return restored["state"], restored["meta"]

    def restore_meta(self, step: int) -> dict[str, Any]:
        return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def latest_good_meta(self) -> tuple[int, dict[str, Any]] | None:
        """The newest checkpoint whose meta reads back, as ``(step, meta)``; None if none does."""
        for step in reversed(self.steps()):
            try:
                return step, self.restore_meta(step)
            except Exception as error:  # noqa: BLE001 (orbax raises many types for damaged files)
                self._set_aside(step, error)
        return None

    def restore_latest_good(
        self, abstract_state: Any, check_meta: Callable[[Mapping[str, Any]], None] = lambda meta: None
    ) -> tuple[Any, dict[str, Any]] | None:
        """The newest checkpoint that reads back whole, or None if there is none.

        ``check_meta`` sees each checkpoint's meta before its arrays are read
        (and may raise, e.g. for another run's config). Each newer checkpoint
        that fails to read is reported and moved aside (left in place by a
        read-only store)."""
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
        if not os.path.exists(os.path.join(self.directory, str(step))):  # deleted by retention meanwhile: no damage
            logger.info("The checkpoint of step %d was removed while being read; trying the one before it", step)
            self._manager.reload()
            return
        where = "left it in place (read only)" if self.read_only else f"moved it to {self.quarantine(step)}"
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        logger.warning(
            "The checkpoint of step %d is unreadable (%s: %s); %s and trying the one before it",
            step,
            type(error).__name__,
            first_line,
            where,
        )

    def quarantine(self, step: int) -> str:
        """Moves the checkpoint of ``step`` out of the store (never deletes it)."""
        if self._manager.is_saving_in_progress():  # pragma: no cover - restores happen before saves
            raise RuntimeError("cannot move a checkpoint while a save is in progress")
        target, copy = os.path.join(self.quarantine_directory, str(step)), 1
        while os.path.exists(target):
            target, copy = os.path.join(self.quarantine_directory, f"{step}.{copy}"), copy + 1
        if jax.process_index() == 0:  # one process moves it; the others wait for the move
            os.makedirs(self.quarantine_directory, exist_ok=True)
            os.rename(os.path.join(self.directory, str(step)), target)
        if jax.process_count() > 1:
            multihost_utils.sync_global_devices(f"jaxclf: checkpoint {step} set aside")
        self._manager.reload()
        return target

    def wait_until_finished(self) -> None:
        if self.failed:
            return  # orbax's threads of the failed save never finish
        with self._reporting_failures():
            self._manager.wait_until_finished()

    def close(self) -> None:
        if not self.failed:
            self._manager.close()


def _metric_value(metrics: Mapping[str, float]) -> float:
    return metrics["value"]
