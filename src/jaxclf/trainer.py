"""The Trainer: a loop around pure, jitted steps that calls its callbacks.

Like Lightning's, it is given what to train and on what data by ``fit`` and
``test``, and everything around the loop (evaluation, checkpoints, logging,
progress, early stopping) is a callback it is given; it names none of them.
It owns the jitted steps, the run's ``checkpoints/`` (resume, preemption,
non-finite updates) and the order of events.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxclf import run_dir
from jaxclf.callbacks.base import Callback
from jaxclf.callbacks.time_budget import TimeBudget
from jaxclf.checkpointing import Retention
from jaxclf.config.choices import NonFinitePolicy
from jaxclf.config.schema import TrainerConfig
from jaxclf.data.loader import DataModule
from jaxclf.errors import ConfigError, NonFiniteError, Preempted
from jaxclf.evaluation import EvalResults, Evaluator
from jaxclf.hardware import Hardware
from jaxclf.metrics import TrainMetrics
from jaxclf.predict import Predictor
from jaxclf.preemption import PreemptionGuard
from jaxclf.steps_per_call import FUSED_STEPS, chosen_steps_per_call
from jaxclf.train_state import Classifier, TrainState

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Compiled:
    """A classifier's jitted steps, evaluator and predictor on the Trainer's hardware."""

    classifier: Classifier
    data: DataModule
    objective: Any
    train_steps: Any
    evaluator: Evaluator
    predictor: Predictor
    # split -> (state, its predictions): the latest state's, per split of this data
    predictions: dict[str, tuple[TrainState, tuple[np.ndarray, np.ndarray]]] = dataclasses.field(default_factory=dict)


class Trainer:
    """Fits a ``Classifier`` on a ``DataModule``; checkpoints, resumes and
    tests in ``workdir``.

    With ``config.resume`` a ``workdir`` that holds a checkpoint continues from
    it exactly: a checkpoint holds the state (parameters, optimizer, step,
    randomness), ``run_config`` and every callback's state (by its
    ``state_key``), and batches are addressed by step. A checkpoint of another
    config is refused. SIGTERM or SIGINT during ``fit`` saves the step in
    flight and raises ``Preempted``.

    Args:
        config: the loop's settings (``trainer`` group): ``max_steps``,
            ``steps_per_call``, ``resume``, ``on_nonfinite``, ``max_time``.
        hardware: the mesh and shardings (``hardware.setup``).
        callbacks: what runs around the loop: evaluation, checkpoints,
            logging, early stopping (``jaxclf.callbacks``).
        workdir: the run directory: checkpoints are written under it.
        run_config: the config saved with each checkpoint and compared on resume.
    """

    def __init__(
        self,
        config: TrainerConfig,
        hardware: Hardware,
        callbacks: Sequence[Callback] = (),
        workdir: str = ".",
        run_config: run_dir.RunConfig | None = None,
    ):
        self.config = config
        self.hardware = hardware
        if config.max_time is not None:
            callbacks = [*callbacks, TimeBudget(config.max_time)]
        self.callbacks = sorted(callbacks, key=lambda callback: callback.order)
        self.workdir = workdir
        self.run_config = run_config
        self.checkpoints = run_dir.checkpoint_store(workdir, _retention(self.callbacks))
        self.should_stop = False  # a callback sets it to end fit after the current call
        self._compiled: _Compiled | None = None
        self._train_metrics: TrainMetrics | None = None
        self.latest_train_metrics: dict[str, jax.Array] = {}  # the last take_train_metrics(), for display
        self.logged_metrics: dict[str, float] = {}  # what callbacks logged with log_metrics, latest value per name
        self.seconds_outside_training = 0.0  # in evaluations and checkpoints during fit
        self.steps_per_call = config.steps_per_call or FUSED_STEPS  # null: chosen once fit() has the data

    # -- state ----------------------------------------------------------------

    def initial_state(self, classifier: Classifier, seed: int = 0) -> TrainState:
        """A fresh state, or the latest readable checkpoint's when resuming
        (with the callbacks' state). Refuses a checkpoint of another config."""
        latest = self.checkpoints.latest_step()
        if latest is not None and not self.config.resume:
            raise ConfigError(
                f"trainer.resume=false but {self.checkpoints.directory} already holds checkpoints "
                f"(latest step {latest}); set trainer.resume=true to continue or choose another hydra.run.dir"
            )
        abstract = classifier.abstract_state()
        restored = (
            None
            if latest is None
            else self.checkpoints.restore_latest_good(self.hardware.placed(abstract), self._check_config)
        )
        if restored is None:
            if latest is not None:
                logger.warning("No readable checkpoint in %s: starting afresh", self.checkpoints.directory)
            initial = jax.jit(classifier.init, out_shardings=self.hardware.state_shardings(abstract))
            return initial(jax.random.PRNGKey(seed))
        state, meta = restored
        self._load_meta(meta)
        logger.info("Resuming from the checkpoint of step %d in %s", int(state.step), self.checkpoints.directory)
        return state

    def _check_config(self, meta: Mapping[str, Any]) -> None:
        """A run directory belongs to one config: resuming with another is refused."""
        if self.run_config is None or not meta.get("config"):
            return
        differences = self.run_config.differences(meta["config"])
        if differences:
            raise ConfigError(
                f"{self.workdir} holds a run of another config; differing keys: {'; '.join(differences)} "
                f"(only run length, logging, checkpointing and data location keys may change on resume); "
                f"choose another hydra.run.dir"
            )

    def _load_meta(self, meta: Mapping[str, Any]) -> None:
        callback_states = meta.get("callbacks", {})
        for callback in self.callbacks:
            if callback.state_key in callback_states:
                callback.load_state_dict(callback_states[callback.state_key])
        self.should_stop = bool(meta.get("trainer", {}).get("should_stop", False))

    def restore(self, classifier: Classifier, step: int | None = None) -> TrainState:
        """The checkpoint of ``step`` (default: the latest readable one)."""
        abstract = self.hardware.placed(classifier.abstract_state())  # any saved mesh restores onto this one
        if step is not None:
            return self.checkpoints.restore(abstract, step)[0]
        if self.checkpoints.latest_step() is None:
            raise ConfigError(f"no checkpoint to evaluate in {self.checkpoints.directory}; train first (mode=fit)")
        restored = self.checkpoints.restore_latest_good(abstract)
        if restored is None:
            raise ConfigError(f"no readable checkpoint in {self.checkpoints.directory}")
        return restored[0]

    def save_checkpoint(self, step: int, state: TrainState, metric: float | None = None) -> bool:
        """Saves ``state`` with the run config, the callbacks' state and the
        Trainer's own (in the background); ``metric`` ranks it for a best-N
        retention. Callbacks hear ``on_save_checkpoint`` first. A step already
        saved is left alone (returns False)."""
        if step in self.checkpoints.steps():
            return False
        self.check_updates(state)  # a halted state is never saved
        with self._outside_training():
            self._emit("on_save_checkpoint", step)
            states = {callback.state_key: callback.state_dict() for callback in self.callbacks}
            meta = {
                "config": dict(self.run_config.values) if self.run_config else None,
                "callbacks": {key: value for key, value in states.items() if value is not None},
                "trainer": {"should_stop": self.should_stop},
            }
            return self.checkpoints.save(step, state, meta, metric=metric)

    @contextlib.contextmanager
    def _outside_training(self) -> Iterator[None]:
        """Counts the wall time of the block in ``seconds_outside_training``
        (evaluations, checkpoints), which training throughput leaves out."""
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds_outside_training += time.monotonic() - start

    def is_finished(self, state: TrainState) -> bool:
        """Whether ``fit`` from ``state`` has nothing left to do."""
        return int(state.step) >= self.config.max_steps or self.should_stop

    # -- training -------------------------------------------------------------

    def fit(
        self, classifier: Classifier, data: DataModule, state: TrainState | None = None, seed: int = 0
    ) -> TrainState:
        """Trains from ``state`` (default: the initial or resumed state) up to
        ``config.max_steps`` or until a callback sets ``should_stop``, and
        returns the final state.

        Args:
            classifier: the model, optimizer and objective to train.
            data: the training batches and the splits to evaluate.
            state: where to start (default: ``initial_state``).
            seed: the initial state's seed, where there is nothing to resume.

        The loop never waits for the device: it learns of non-finite updates
        from a copy of the state's counts that it starts at each step where
        a callback is due (logging, evaluation, checkpoints) and reads at the
        next one, so the host runs at most one period ahead. Saving a
        checkpoint, evaluating and the end read the state itself. With
        several processes, they agree on a preemption signal one call after it came.
        """
        if data.train is None:
            raise ValueError("fit needs training data (DataModule.train)")
        compiled = self._compile(classifier, data)
        state = self.initial_state(classifier, seed) if state is None else state
        step = int(jax.device_get(state.step))
        periods = [callback.every_steps for callback in self.callbacks if callback.every_steps]
        counts: jax.Array | None = None  # [skipped_steps, step], copying to the host since the last due step
        self._emit("on_fit_start", state)
        with PreemptionGuard() as preemption:  # a signal to any process stops all of them at the same step
            while step < self.config.max_steps and not self.should_stop:  # the host's count
                num_steps = self._steps_in_next_call(step, periods)
                batches = data.train.batches(step, num_steps)
                state, self._train_metrics, latest_counts = compiled.train_steps(
                    state, self._train_metrics, batches, compiled.objective
                )
                step += num_steps
                due = step == self.config.max_steps or any(step % period == 0 for period in periods)
                if due:
                    if counts is not None:
                        self._check_counts(*np.asarray(counts))  # arrived by now (or the device is behind)
                    counts = latest_counts
                    counts.copy_to_host_async()
                self._emit("on_train_steps_end", state, step)
                received = preemption.poll()  # the same answer in every process
                if received is not None:
                    self._save_and_stop(state, received)
        self.check_updates(state)
        self._emit("on_fit_end", state)
        return state

    def _steps_in_next_call(self, step: int, periods: Sequence[int]) -> int:
        """Steps to fuse into the next call: at most ``steps_per_call``, never
        crossing ``max_steps`` or a multiple of a callback's ``every_steps``."""
        boundary = min([self.config.max_steps] + [(step // period + 1) * period for period in periods])
        return min(self.steps_per_call, boundary - step)

    def take_train_metrics(self) -> dict[str, jax.Array]:
        """The training metrics accumulated since the last call (``loss``,
        ``accuracy``, ``learning_rate``, ``skipped_steps``), then resets them.
        Their copy to the host has begun but is not waited for: read them
        (``float``) later, and the device never waits for the host."""
        if self._train_metrics is None:
            raise RuntimeError("take_train_metrics() reads what fit() accumulates")
        results = _computed(self._train_metrics)
        for value in results.values():
            value.copy_to_host_async()
        self._train_metrics = jax.device_put(_empty_metrics(), self.hardware.replicated)
        self.latest_train_metrics = results
        return results

    def check_updates(self, state: TrainState) -> None:
        """Raises ``NonFiniteError`` if ``state`` halted on a non-finite update
        (``on_nonfinite=stop``) or skipped more than ``max_skipped_fraction``
        of its updates (``skip``). One read from the device."""
        self._check_counts(*jax.device_get((state.skipped_steps, state.step)))

    def _check_counts(self, skipped: int, steps: int) -> None:
        """``check_updates`` of a state that skipped ``skipped`` updates and counts ``steps`` steps."""
        if self.config.on_nonfinite == NonFinitePolicy.stop and skipped:
            self.checkpoints.wait_until_finished()
            latest = self.checkpoints.latest_step()
            last_good = (
                f"step {latest} in {self.checkpoints.directory}" if latest is not None else "none (no checkpoint yet)"
            )
            raise NonFiniteError(
                f"non-finite loss or gradients at step {steps + 1} (the update was not applied); last good "
                f"checkpoint: {last_good}; lower optim.learning_rate, set optim.grad_clip_norm, or set "
                "trainer.on_nonfinite=skip"
            )
        if skipped > self.config.max_skipped_fraction * steps:
            raise NonFiniteError(
                f"{skipped} of the first {steps} updates were skipped for non-finite loss or gradients, more than "
                f"trainer.max_skipped_fraction={self.config.max_skipped_fraction}; lower optim.learning_rate or set "
                "optim.grad_clip_norm"
            )

    def _save_and_stop(self, state: TrainState, signal_received: signal.Signals) -> None:
        step = int(state.step)
        self.save_checkpoint(step, state)
        self.checkpoints.wait_until_finished()
        raise Preempted(
            f"{signal_received.name} received: stopped at step {step} of {self.config.max_steps} with a checkpoint in "
            f"{self.checkpoints.directory}; run the same command again to resume",
            int(signal_received),
        )

    # -- evaluation -----------------------------------------------------------

    def evaluate(self, state: TrainState, split: str) -> EvalResults:
        """Metrics of ``state`` on the named split of the data given to ``fit``
        or ``test``; callbacks hear ``on_eval_end``."""
        compiled = self._require_compiled()
        self.check_updates(state)  # a halted state is never evaluated (and training has finished on the device)
        with self._outside_training():
            results = compiled.evaluator(state, compiled.data.eval_splits[split])
            self._emit("on_eval_end", state, int(state.step), split, results)
        return results

    @property
    def data(self) -> DataModule:
        """The data given to the latest ``fit`` or ``test``."""
        return self._require_compiled().data

    def predict(self, state: TrainState, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The predicted distribution's log-probabilities and the label of
        every example of the named split of the data given to ``fit`` or
        ``test``. The latest state's are kept per split: the end of a run asks
        for the test split twice (the worst mistakes, temperature scaling)."""
        compiled = self._require_compiled()
        cached = compiled.predictions.get(split)
        if cached is not None and cached[0] is state:
            return cached[1]
        predictions = compiled.predictor(state, compiled.data.eval_splits[split])
        compiled.predictions[split] = (state, predictions)
        return predictions

    def test(
        self, classifier: Classifier, data: DataModule, state: TrainState, splits: Sequence[str]
    ) -> dict[str, EvalResults]:
        """Metrics of ``state`` on each of ``splits``; callbacks hear ``on_test_end`` with all of them."""
        compiled = self._compile(classifier, data)
        results = {split: compiled.evaluator(state, data.eval_splits[split]) for split in splits}
        self._emit("on_test_end", state, results)
        return results

    def best_state(self, classifier: Classifier, state: TrainState) -> TrainState:
        """The best checkpoint's state, where a callback ranks checkpoints by a
        metric (``Callback.best_checkpoint``) and ``state`` is not it; else ``state``."""
        best = next((found for callback in self.callbacks if (found := callback.best_checkpoint())), None)
        if best is None or best[0] == int(state.step):
            return state
        logger.info("Testing the best checkpoint: step %d, %s", *best)
        return self.restore(classifier, best[0])

    def log_metrics(self, step: int, metrics: Mapping[str, float]) -> None:
        """Records scalar ``metrics`` of ``step`` in ``logged_metrics``; callbacks
        hear ``on_log_metrics`` (TensorBoard writes them)."""
        self.logged_metrics.update(metrics)
        self._emit("on_log_metrics", step, metrics)

    # -- plumbing -------------------------------------------------------------

    def _compile(self, classifier: Classifier, data: DataModule) -> _Compiled:
        if self._compiled is None or self._compiled.classifier is not classifier or self._compiled.data is not data:
            if data.train is not None:
                check_micro_batches(data.train.batch_size, self.config.accumulate_steps, self.hardware.num_devices)
                self.steps_per_call = self.config.steps_per_call or chosen_steps_per_call(
                    classifier.model, classifier.image_shape, data.train.batch_size
                )
            replicated = self.hardware.replicated
            state_shardings = self.hardware.state_shardings(classifier.abstract_state())
            train_steps = _with_counts(
                functools.partial(
                    classifier.train_steps,
                    accumulate_steps=self.config.accumulate_steps,
                    halt_on_nonfinite=self.config.on_nonfinite == NonFinitePolicy.stop,
                )
            )
            self._compiled = _Compiled(
                classifier=classifier,
                data=data,
                objective=jax.device_put(classifier.objective, replicated),
                # The state keeps its layout from call to call (sharded by the
                # mesh's rule); the metrics stay replicated.
                train_steps=FirstCallTimed(
                    jax.jit(
                        train_steps, donate_argnums=(0, 1), out_shardings=(state_shardings, replicated, replicated)
                    ),
                    "the training step",
                ),
                evaluator=Evaluator(
                    classifier, self.hardware, data.eval_batch_size, data.num_classes, data.top5_min_classes
                ),
                predictor=Predictor(classifier, self.hardware, data.eval_batch_size),
            )
            self._train_metrics = jax.device_put(_empty_metrics(), self.hardware.replicated)
        return self._compiled

    def _require_compiled(self) -> _Compiled:
        if self._compiled is None:
            raise RuntimeError("evaluate() runs inside fit() or test(), which say what to evaluate")
        return self._compiled

    def _emit(self, event: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, event)(self, *args)

    def close(self) -> None:
        """Waits for checkpoints in flight and releases the callbacks' resources."""
        self.checkpoints.wait_until_finished()
        self.checkpoints.close()
        self._emit("teardown")


class FirstCallTimed:
    """A jitted function that logs, around its first call, that ``what``
    compiles and how long that took (a launch's longest silence otherwise).
    The call returns once the program is compiled (or loaded from the
    compilation cache) and dispatched, not run."""

    def __init__(self, jitted: Callable[..., Any], what: str):
        self.jitted, self.what, self.called = jitted, what, False

    def __call__(self, *args: Any) -> Any:
        if self.called:
            return self.jitted(*args)
        logger.info("Compiling %s...", self.what)
        start = time.monotonic()
        results = self.jitted(*args)
        self.called = True
        logger.info("Compiled %s in %.1f s", self.what, time.monotonic() - start)
        return results


_computed = jax.jit(TrainMetrics.compute)  # one dispatch, not one per metric


@functools.cache
def _empty_metrics() -> TrainMetrics:
    """``TrainMetrics.empty()`` on the host: resetting is a copy, not a computation per field."""
    return jax.tree.map(np.asarray, TrainMetrics.empty())


def _with_counts(train_steps: Callable[..., tuple[TrainState, TrainMetrics]]) -> Callable[..., Any]:
    """``train_steps`` that also returns ``[skipped_steps, step]`` of the new
    state: a small array of its own, readable after the state is donated."""

    def with_counts(*args: Any) -> tuple[TrainState, TrainMetrics, jax.Array]:
        state, metrics = train_steps(*args)
        return state, metrics, jnp.stack([state.skipped_steps, jnp.asarray(state.step, state.skipped_steps.dtype)])

    return with_counts


def check_micro_batches(batch_size: int, micro_batches: int, devices: int) -> None:
    """A batch must split into ``micro_batches`` equal parts, each split over every device."""
    if batch_size % (micro_batches * devices):
        raise ConfigError(
            f"data.batch_size={batch_size} does not split into trainer.accumulate_steps={micro_batches} "
            f"micro-batches that are multiples of the device count ({devices}); make it a multiple of "
            f"{micro_batches * devices}"
        )


def _retention(callbacks: Sequence[Callback]) -> Retention:
    """Which checkpoints to keep: what the one callback that decides says (all of them if none does)."""
    decisions = {callback.state_key: retention for callback in callbacks if (retention := callback.retention())}
    if len(decisions) > 1:
        names = ", ".join(decisions)
        raise ConfigError(f"callbacks {names} each decide which checkpoints to keep; configure one of them")
    return next(iter(decisions.values()), Retention())
