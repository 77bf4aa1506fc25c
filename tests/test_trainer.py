"""The Trainer in process: fused steps, masked evaluation, callbacks, resume."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from conftest import tensorboard_scalars
from jaxclf import hardware as hardware_lib
from jaxclf.build import build
from jaxclf.callbacks import Callback, EarlyStopping
from jaxclf.metrics import EvalMetrics, TrainMetrics
from jaxclf.models.mlp import MLP
from jaxclf.objectives import Objective
from jaxclf.train_state import create_train_state, eval_step, train_step, train_steps


@pytest.fixture(scope="module")
def state_and_batches():
    model = MLP(num_classes=3, hidden_sizes=(16,), dropout_rate=0.1)
    state = create_train_state(model, optax.adam(1e-2), (4, 4, 1), jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    batches = {
        "image": jnp.asarray(rng.normal(size=(5, 8, 4, 4, 1)), jnp.float32),
        "label": jnp.asarray(rng.integers(0, 3, size=(5, 8)), jnp.int32),
    }
    return state, batches


def test_fused_steps_equal_single_steps(state_and_batches):
    """lax.scan over 5 steps computes what 5 separate jitted steps compute."""
    state, batches = state_and_batches
    objective = Objective(label_smoothing=0.1, mixup_alpha=0.4)
    fused, fused_metrics = jax.jit(train_steps)(state, TrainMetrics.empty(), batches, objective)
    single = state
    losses = []
    step = jax.jit(train_step)
    for index in range(5):
        single, outputs = step(single, jax.tree.map(lambda x, i=index: x[i], batches), objective)
        losses.append(float(outputs["loss"]))
    assert int(fused.step) == int(single.step) == 5
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), fused.params, single.params)
    np.testing.assert_allclose(fused_metrics.compute()["loss"], np.mean(losses), rtol=1e-5)


def test_a_single_fused_step_is_one_train_step(state_and_batches):
    state, batches = state_and_batches
    objective = Objective()
    one = jax.tree.map(lambda x: x[:1], batches)
    fused, metrics = jax.jit(train_steps)(state, TrainMetrics.empty(), one, objective)
    single, outputs = jax.jit(train_step)(state, jax.tree.map(lambda x: x[0], batches), objective)
    jax.tree.map(np.testing.assert_array_equal, fused.params, single.params)
    np.testing.assert_allclose(metrics.compute()["loss"], outputs["loss"], rtol=1e-6)


@pytest.mark.parametrize("halt", [True, False])
def test_a_nonfinite_step_halts_the_state_or_is_skipped(state_and_batches, halt):
    """Batch 2 of 5 is NaN. Halting keeps the state of the 2 steps before it
    (and counts one skip); skipping applies steps 4 and 5 as well."""
    state, batches = state_and_batches
    objective = Objective()
    poisoned = {**batches, "image": batches["image"].at[2, 0, 0, 0, 0].set(jnp.nan)}
    fused, metrics = jax.jit(functools.partial(train_steps, halt_on_nonfinite=halt))(
        state, TrainMetrics.empty(), poisoned, objective
    )
    single, losses = state, []
    for index in range(5 if not halt else 2):
        if index == 2:
            continue
        batch = jax.tree.map(lambda x, i=index: x[i], poisoned)
        applied, outputs = jax.jit(train_step)(single.replace(step=jnp.asarray(index)), batch, objective)
        single, losses = applied, [*losses, float(outputs["loss"])]
    assert int(fused.skipped_steps) == 1
    assert int(fused.step) == (2 if halt else 5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), fused.params, single.params)
    np.testing.assert_allclose(metrics.compute()["loss"], np.mean(losses), rtol=1e-5)  # of the applied steps


def test_eval_step_ignores_padding(state_and_batches):
    state, batches = state_and_batches
    images, labels = batches["image"][0], batches["label"][0]
    mask = jnp.arange(8) < 5
    metrics = jax.jit(eval_step)(state, EvalMetrics.empty(), {"image": images, "label": labels, "mask": mask})
    logits = np.asarray(state.apply_fn({"params": state.params}, images, train=False), np.float64)[:5]
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    expected_nll = -log_probs[np.arange(5), np.asarray(labels[:5])].mean()
    expected_accuracy = (logits.argmax(-1) == np.asarray(labels[:5])).mean()
    results = metrics.compute()
    np.testing.assert_allclose(results["loss"], expected_nll, rtol=1e-5)
    np.testing.assert_allclose(results["accuracy"], expected_accuracy)
    assert metrics.num_examples == 5


def test_dropout_acts_only_in_training(state_and_batches):
    state, batches = state_and_batches
    images = batches["image"][0]
    variables = {"params": state.params}
    eval_a = state.apply_fn(variables, images, train=False)
    eval_b = state.apply_fn(variables, images, train=False)
    np.testing.assert_array_equal(eval_a, eval_b)
    train_out = state.apply_fn(variables, images, train=True, rngs={"dropout": jax.random.PRNGKey(1)})
    assert not np.allclose(train_out, eval_a)


class RecordingCallback(Callback):
    """Records every event it sees (used through the ``callbacks`` config)."""

    def __init__(self, tag: str = "recorder"):
        self.tag = tag
        self.events: list[tuple] = []

    def on_fit_start(self, trainer, state):
        self.events.append(("fit_start", int(state.step)))

    def on_train_steps_end(self, trainer, state, step):
        self.events.append(("train_steps_end", step))

    def on_eval_end(self, trainer, state, step, split, results):
        self.events.append(("eval_end", step, split, results["num_examples"]))

    def on_save_checkpoint(self, trainer, step):
        self.events.append(("checkpoint", step))

    def on_fit_end(self, trainer, state):
        self.events.append(("fit_end", int(state.step)))

    def on_log_metrics(self, trainer, step, metrics):
        self.events.append(("log_metrics", step, dict(metrics)))


RECORDER = (
    "callbacks.progress_bar=null",
    "+callbacks.recorder._target_=test_trainer.RecordingCallback",
    "+callbacks.recorder.tag=probe",
)


def _build(compose, data_dir, workdir, *overrides, callbacks=RECORDER):
    """``(trainer, classifier, data)`` as ``jaxclf.build`` builds them from the composed config."""
    cfg = compose([f"data.data_dir={data_dir}", *callbacks, *overrides])
    return build(cfg, str(workdir))


def _callback(trainer, state_key):
    return next(callback for callback in trainer.callbacks if callback.state_key == state_key)


@pytest.mark.slow  # ~9 s on 2 cores
def test_user_callback_from_config_sees_every_event(compose, data_dir, tmp_path):
    trainer, classifier, data = _build(
        compose,
        data_dir,
        tmp_path,
        "trainer.max_steps=25",
        "trainer.steps_per_call=4",
        "callbacks.tensorboard.every_steps=10",
        "callbacks.evaluation.every_steps=10",
        "callbacks.checkpoint.every_steps=20",
        "data.eval_batch_size=64",
    )
    recorder = _callback(trainer, "recorder")
    assert isinstance(recorder, RecordingCallback) and recorder.tag == "probe"
    state = trainer.fit(classifier, data)
    trainer.close()
    assert int(state.step) == 25
    ends = [event[1] for event in recorder.events if event[0] == "train_steps_end"]
    # At most 4 steps per call, and calls stop at every multiple of 10 and 20 and at 25.
    assert ends == [4, 8, 10, 14, 18, 20, 24, 25]
    assert ("eval_end", 10, "validation", 200) in recorder.events
    assert ("eval_end", 20, "validation", 200) in recorder.events
    assert [event for event in recorder.events if event[0] == "checkpoint"] == [("checkpoint", 20), ("checkpoint", 25)]
    assert recorder.events[0] == ("fit_start", 0)
    assert recorder.events[-2:] == [
        ("fit_end", 25),
        ("checkpoint", 25),
    ]  # checkpointing runs last, after every other callback
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert [event.step for event in events.Tensors("train/loss")] == [10, 20, 25]  # the tail is logged too


def test_resume_continues_from_the_checkpoint(compose, data_dir, tmp_path):
    first, classifier, data = _build(
        compose, data_dir, tmp_path, "trainer.max_steps=20", "callbacks.checkpoint.every_steps=10"
    )
    first_state = first.fit(classifier, data)
    first.close()
    assert first.checkpoints.latest_step() == 20

    second, classifier, data = _build(
        compose, data_dir, tmp_path, "trainer.max_steps=30", "callbacks.checkpoint.every_steps=10"
    )
    restored = second.initial_state(classifier)
    assert int(restored.step) == 20
    jax.tree.map(np.testing.assert_array_equal, restored.params, first_state.params)
    state = second.fit(classifier, data, restored)
    second.close()
    assert int(state.step) == 30
    recorder = _callback(second, "recorder")
    assert recorder.events[0] == ("fit_start", 20)
    assert next(e[1] for e in recorder.events if e[0] == "train_steps_end") > 20


def test_two_callbacks_of_one_class_keep_their_own_state_across_a_resume(compose, data_dir, tmp_path):
    """Two early stoppers, one on the validation NLL and one on its accuracy:
    each resumes with its own best value (their states are saved by name, not class)."""
    stoppers = (
        "callbacks=early_stopping",
        "callbacks.early_stopping.patience=100",
        "+callbacks.accuracy_stop._target_=jaxclf.callbacks.EarlyStopping",
        "+callbacks.accuracy_stop.monitor=accuracy",
        "+callbacks.accuracy_stop.patience=100",
        "callbacks.evaluation.every_steps=10",
        "callbacks.checkpoint.every_steps=10",
        "trainer.max_steps=30",
    )
    first, classifier, data = _build(compose, data_dir, tmp_path, *stoppers)
    first.fit(classifier, data)
    first.close()
    by_nll, by_accuracy = _callback(first, "early_stopping"), _callback(first, "accuracy_stop")
    assert isinstance(by_nll, EarlyStopping) and isinstance(by_accuracy, EarlyStopping)
    assert by_nll.best_value != by_accuracy.best_value  # an NLL near 0.1, an accuracy near 1

    second, classifier, _ = _build(compose, data_dir, tmp_path, *stoppers)
    second.initial_state(classifier)
    second.close()
    assert _callback(second, "early_stopping").state_dict() == by_nll.state_dict()
    assert _callback(second, "accuracy_stop").state_dict() == by_accuracy.state_dict()


def test_no_callbacks_is_a_bare_loop(compose, data_dir, tmp_path):
    trainer, classifier, data = _build(
        compose, data_dir, tmp_path, "callbacks=none", "trainer.max_steps=20", callbacks=()
    )
    assert trainer.callbacks == []
    state = trainer.fit(classifier, data)
    results = trainer.test(classifier, data, state, ["test"])
    trainer.close()
    assert int(state.step) == 20 and results["test"]["num_examples"] == 297
    assert list(tmp_path.iterdir()) == [tmp_path / "checkpoints"] and not any((tmp_path / "checkpoints").iterdir())


def test_the_trainer_tests_the_checkpoint_a_callback_names_best_and_passes_on_what_callbacks_log(
    compose, data_dir, tmp_path
):
    trainer, classifier, data = _build(
        compose, data_dir, tmp_path, "trainer.max_steps=20", "callbacks.checkpoint.every_steps=10"
    )
    state = trainer.fit(classifier, data)
    assert trainer.best_state(classifier, state) is state  # no callback ranks checkpoints
    step_10 = trainer.restore(classifier, 10)
    checkpoint = _callback(trainer, "checkpoint")
    checkpoint.best_step, checkpoint.best_value = 10, 0.5  # as if step 10 had the best validation metric
    best = trainer.best_state(classifier, state)
    assert int(best.step) == 10
    jax.tree.map(np.testing.assert_array_equal, best.params, step_10.params)

    trainer.log_metrics(20, {"probe/value": 0.25})
    trainer.close()
    assert trainer.logged_metrics == {"probe/value": 0.25}
    assert ("log_metrics", 20, {"probe/value": 0.25}) in _callback(trainer, "recorder").events
    assert tensorboard_scalars(tmp_path)["probe/value"] == [(20, 0.25)]


@pytest.mark.slow  # ~16 s on 2 cores
def test_batch_norm_statistics_train_and_resume_with_the_checkpoint(compose, data_dir, tmp_path):
    resnet = ("model=resnet18", "model.stem=cifar", "model.width=4", "model.stage_sizes=[1,1]")
    first, classifier, data = _build(
        compose, data_dir, tmp_path, *resnet, "trainer.max_steps=10", "callbacks.checkpoint.every_steps=10"
    )
    initial = first.initial_state(classifier)
    initial_mean = np.asarray(initial.model_state["batch_stats"]["stem_norm"]["mean"])  # fit donates the state
    state = first.fit(classifier, data, initial)
    first_results = first.test(classifier, data, state, ["test"])["test"]
    first.close()
    running_mean = state.model_state["batch_stats"]["stem_norm"]["mean"]
    assert not np.allclose(running_mean, initial_mean)  # updated in training

    second, classifier, data = _build(compose, data_dir, tmp_path, *resnet, "trainer.max_steps=10")
    restored = second.restore(classifier)
    second_results = second.test(classifier, data, restored, ["test"])["test"]
    second.close()
    jax.tree.map(np.testing.assert_array_equal, restored.model_state, state.model_state)
    assert dict(second_results) == dict(first_results)  # evaluation uses the restored running statistics


def test_a_mesh_is_built_even_on_one_cpu():
    hardware = hardware_lib.setup(hardware_lib.HardwareConfig())
    assert hardware.mesh.axis_names == (hardware_lib.DATA_AXIS, hardware_lib.FSDP_AXIS)
    assert hardware.num_devices == len(jax.devices())


@pytest.mark.slow  # ~10 s on 2 cores
def test_bfloat16_compute_keeps_float32_parameters_and_logits():
    model = MLP(num_classes=3, hidden_sizes=(8,), dtype="bfloat16")
    state = create_train_state(model, optax.sgd(0.1), (2, 2, 1), jax.random.PRNGKey(0))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(state.params))
    images = jnp.ones((4, 2, 2, 1))
    logits = state.apply_fn({"params": state.params}, images)
    assert logits.dtype == jnp.float32
    objective = Objective()
    batch = {"image": images, "label": jnp.array([0, 1, 2, 0])}
    new_state, outputs = jax.jit(train_step)(state, batch, objective)
    assert np.isfinite(float(outputs["loss"]))
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(new_state.params))


@pytest.mark.parametrize("steps_per_call", [1, 10])
def test_the_train_step_compiles_once_per_program_shape(compose, data_dir, tmp_path, steps_per_call):
    trainer, classifier, data = _build(
        compose,
        data_dir,
        tmp_path,
        "trainer.max_steps=60",
        f"trainer.steps_per_call={steps_per_call}",
        "callbacks.evaluation.every_steps=20",
        "callbacks.tensorboard.every_steps=20",  # metrics are taken and reset between calls
        "callbacks.checkpoint.every_steps=30",
    )
    trainer.fit(classifier, data)
    train_steps = trainer._compiled.train_steps.jitted
    trainer.close()
    data.close()
    # Every call has the same shapes (20, 30 and 60 cut no call short): one program.
    assert train_steps._cache_size() == 1


@pytest.fixture
def device_reads(monkeypatch):
    """Counts the copies of device arrays to the host (every ``int(x)``,
    ``np.asarray(x)`` and ``jax.device_get`` goes through ``_value``)."""
    from jax._src.array import ArrayImpl

    reads = [0]
    value = ArrayImpl._value

    def counted(array):
        reads[0] += 1
        return value.fget(array)

    monkeypatch.setattr(ArrayImpl, "_value", property(counted))
    return reads


@pytest.mark.parametrize("on_nonfinite", ["stop", "skip"])
def test_the_loop_reads_the_device_only_where_a_callback_is_due(
    compose, data_dir, tmp_path, device_reads, on_nonfinite
):
    """With no callback due before the end, 20 and 40 calls read the device equally often."""
    counts = []
    for max_steps in (20, 40):
        trainer, classifier, data = _build(
            compose,
            data_dir,
            tmp_path / str(max_steps),
            f"trainer.max_steps={max_steps}",
            "trainer.steps_per_call=1",
            f"trainer.on_nonfinite={on_nonfinite}",
            callbacks=("callbacks=none",),
        )
        before = device_reads[0]
        trainer.fit(classifier, data)
        counts.append(device_reads[0] - before)
        trainer.close()
        data.close()
    assert counts[0] == counts[1] <= 4, counts


def test_a_training_steps_flops_estimate_matches_the_dense_layers_closed_form():
    from jaxclf.steps_per_call import train_step_flops

    model = MLP(num_classes=10, hidden_sizes=(256, 256))
    # Forward: a multiply-add (2 FLOPs) per weight per example; backward about twice that.
    weights = 64 * 256 + 256 * 256 + 256 * 10
    expected = 3 * 2 * weights * 128
    assert train_step_flops(model, (8, 8, 1), 128) == pytest.approx(expected, rel=0.05)


def test_a_backend_without_a_cost_analysis_runs_one_step_a_call():
    """JAX 0.11's CUDA backend returns no cost analysis for a lowered program (seen on an H200)."""
    from jaxclf.steps_per_call import compiled_flops, fused_steps_per_call

    class Uncounted:  # what jax.stages.Lowered is there: cost_analysis() is None
        def cost_analysis(self) -> None:
            return None

    flops = compiled_flops(Uncounted())
    assert np.isnan(flops) and fused_steps_per_call(flops) == 1


@pytest.mark.parametrize(("model", "calls"), [("mlp", [10, 20, 30]), ("vit", [1, 2, 3])])
def test_by_default_only_cheap_steps_are_fused(compose, data_dir, tmp_path, model, calls):
    """The MLP's step (0.07 GFLOP) is fused 10 to a call; the small ViT's with 2x2 patches (1.8 GFLOP) runs alone."""
    trainer, classifier, data = _build(
        compose,
        data_dir,
        tmp_path,
        f"model={model}",
        *(("trainer.max_steps=3", "model.patch_size=2") if model == "vit" else ("trainer.max_steps=30",)),
    )
    trainer.fit(classifier, data)
    trainer.close()
    data.close()
    recorder = _callback(trainer, "recorder")
    assert [event[1] for event in recorder.events if event[0] == "train_steps_end"] == calls


@pytest.mark.slow  # ~18 s on 2 cores
def test_the_logged_norms_are_the_gradients_parameters_and_update_of_the_step():
    # With plain SGD the update is -learning_rate * gradient: three norms, one closed form.
    model = MLP(num_classes=3, hidden_sizes=(8,))
    state = create_train_state(model, optax.sgd(0.5), (4, 4, 1), jax.random.PRNGKey(2))
    rng = np.random.default_rng(2)
    batch = {
        "image": jnp.asarray(rng.normal(size=(8, 4, 4, 1)), jnp.float32),
        "label": jnp.asarray(rng.integers(0, 3, size=8), jnp.int32),
    }
    new_state, outputs = train_step(state, batch, Objective())

    def norm(tree):
        return np.sqrt(sum(np.sum(np.asarray(leaf, np.float64) ** 2) for leaf in jax.tree.leaves(tree)))

    step = jax.tree.map(lambda new, old: np.asarray(new, np.float64) - np.asarray(old, np.float64),
                        new_state.params, state.params)  # fmt: skip
    np.testing.assert_allclose(float(outputs["param_norm"]), norm(new_state.params), rtol=1e-5)
    np.testing.assert_allclose(float(outputs["update_norm"]), norm(step), rtol=1e-4)
    np.testing.assert_allclose(float(outputs["grad_norm"]), norm(step) / 0.5, rtol=1e-4)


class _ClockedRun(Callback):
    """Drives a fake clock: each training call takes 1 s, each evaluation 100 s."""

    order = -1  # before the other callbacks: a call's second has passed when they look

    def __init__(self):
        self.now = 0.0

    def on_train_steps_end(self, trainer, state, step):
        self.now += 1.0

    def on_eval_end(self, trainer, state, step, split, results):
        self.now += 100.0


def test_steps_per_sec_counts_training_time_only(compose, data_dir, tmp_path, monkeypatch):
    from conftest import tensorboard_scalars

    clock = _ClockedRun()
    cfg = compose(
        [f"data.data_dir={data_dir}", "trainer.max_steps=60", "trainer.steps_per_call=10",
         "callbacks.evaluation.every_steps=20", "callbacks.tensorboard.every_steps=20",
         "callbacks.checkpoint=null", "callbacks.progress_bar=null"]
    )  # fmt: skip
    trainer, classifier, data = build(cfg, str(tmp_path), extra_callbacks=[clock])
    monkeypatch.setattr("jaxclf.trainer.time.monotonic", lambda: clock.now)
    trainer.fit(classifier, data)
    trainer.close()
    data.close()
    monkeypatch.undo()
    # Two calls of 10 steps per period: 20 steps in 2 s, whatever the evaluations took.
    assert tensorboard_scalars(tmp_path)["train/steps_per_sec"] == [(20, 10.0), (40, 10.0), (60, 10.0)]


@pytest.mark.slow  # ~16 s on 2 cores
def test_the_weights_moving_average_follows_its_recursion_and_is_what_evaluation_scores():
    model = MLP(num_classes=3, hidden_sizes=(8,))
    state = create_train_state(model, optax.sgd(0.3), (4, 4, 1), jax.random.PRNGKey(3), ema_decay=0.9)
    rng = np.random.default_rng(3)
    average = [np.asarray(leaf, np.float64) for leaf in jax.tree.leaves(state.params)]
    for step in range(5):
        batch = {
            "image": jnp.asarray(rng.normal(size=(8, 4, 4, 1)), jnp.float32),
            "label": jnp.asarray(rng.integers(0, 3, size=8), jnp.int32),
        }
        state, _ = train_step(state, batch, Objective())
        decay = min(0.9, (1 + step) / (10 + step))  # warmed up: the early weights fade fast
        params = jax.tree.leaves(state.params)
        average = [decay * a + (1 - decay) * np.asarray(p) for a, p in zip(average, params, strict=True)]
    for expected, actual in zip(average, jax.tree.leaves(state.ema_params), strict=True):
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-7)
    # Evaluation scores the average: all-zero averaged weights give uniform predictions, NLL log(3).
    zeroed = state.replace(ema_params=jax.tree.map(jnp.zeros_like, state.ema_params))
    batch = {"image": jnp.ones((4, 4, 4, 1)), "label": jnp.array([0, 1, 2, 0]), "mask": jnp.ones(4, bool)}
    metrics = eval_step(zeroed, EvalMetrics.for_classes(3), batch)
    np.testing.assert_allclose(float(metrics.compute()["nll"]), np.log(3), rtol=1e-6)
    assert float(eval_step(state, EvalMetrics.for_classes(3), batch).compute()["nll"]) != pytest.approx(np.log(3))
