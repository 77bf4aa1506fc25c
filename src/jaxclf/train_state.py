"""The pytree a training step transforms, and the pure steps themselves."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from flax.training import train_state

from jaxclf.losses import two_class_logits
from jaxclf.metrics import EvalMetrics, TrainMetrics
from jaxclf.objectives import Objective
from jaxclf.optim import current_learning_rate

Batch = dict[str, jax.Array]


class TrainState(train_state.TrainState):
    """Parameters, optimizer state and step, plus the step's randomness,
    non-parameter model collections (e.g. BatchNorm statistics), the count
    of updates skipped for non-finite values and, with ``ema_decay``, an
    exponential moving average of the parameters, which evaluation uses."""

    rng: jax.Array
    model_state: dict[str, Any]
    skipped_steps: jax.Array
    ema_params: Any = None
    ema_decay: float = struct.field(pytree_node=False, default=0.0)

    @property
    def evaluated_params(self) -> Any:
        """What evaluation and prediction use: the moving average where there is one."""
        return self.params if self.ema_params is None else self.ema_params


def init_variables(model: nn.Module, image_shape: tuple[int, ...], rng: jax.Array) -> dict[str, Any]:
    """The model's variables (``params`` and any state) for images of ``image_shape`` (``[H, W, C]``)."""
    init_rng, dropout_rng = jax.random.split(rng)
    sample_images = jnp.zeros((1, *image_shape), jnp.float32)
    return dict(model.init({"params": init_rng, "dropout": dropout_rng}, sample_images, train=False))


def abstract_variables(model: nn.Module, image_shape: tuple[int, ...]) -> dict[str, Any]:
    """``init_variables`` as ShapeDtypeStructs: traces the model without
    allocating or computing anything, so shape errors surface before compiling."""
    return jax.eval_shape(functools.partial(init_variables, model, tuple(image_shape)), jax.random.key(0))


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    image_shape: tuple[int, ...],
    rng: jax.Array,
    ema_decay: float | None = None,
) -> TrainState:
    """Initialises the model for images of ``image_shape`` (``[H, W, C]``);
    with ``ema_decay``, the parameters' moving average starts as a copy of them."""
    init_rng, step_rng = jax.random.split(rng)
    variables = init_variables(model, image_shape, init_rng)
    params = variables.pop("params")
    return TrainState.create(
        apply_fn=model.apply,
        params=params,
        tx=tx,
        rng=step_rng,
        model_state=variables,
        skipped_steps=jnp.zeros((), jnp.int32),
        ema_params=None if ema_decay is None else jax.tree.map(jnp.copy, params),
        ema_decay=ema_decay or 0.0,
    )


def abstract_train_state(
    model: nn.Module, tx: optax.GradientTransformation, image_shape: tuple[int, ...], ema_decay: float | None = None
) -> TrainState:
    """The TrainState's structure as ShapeDtypeStructs: allocates nothing."""
    create = functools.partial(create_train_state, model, tx, tuple(image_shape), ema_decay=ema_decay)
    return jax.eval_shape(create, jax.random.PRNGKey(0))


def count_params(state: TrainState) -> int:
    return sum(int(p.size) for p in jax.tree.leaves(state.params))


def _forward(apply_fn, params, model_state, images: jax.Array, *, train: bool, rng: jax.Array | None = None):
    """Logits and the updated model state (unchanged outside training)."""
    variables = {"params": params, **model_state}
    rngs = {"dropout": rng} if rng is not None else None
    if train and model_state:
        return apply_fn(variables, images, train=True, rngs=rngs, mutable=list(model_state))
    return apply_fn(variables, images, train=train, rngs=rngs), model_state


def all_finite(tree: Any) -> jax.Array:
    """Whether every value in ``tree`` is finite (a scalar bool), read from one
    global norm: per-leaf ``isfinite`` reductions make XLA:CPU compile large
    steps many times slower. Magnitudes beyond ~1e19 count as non-finite too
    (their squares overflow)."""
    return jnp.isfinite(optax.tree.norm(tree))


def train_step(
    state: TrainState, batch: Batch, objective: Objective, accumulate_steps: int = 1, halt_on_nonfinite: bool = False
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One gradient step on the mean of ``objective`` over the batch, whose
    gradient is accumulated over ``accumulate_steps`` equal micro-batches.

    An update whose loss, gradients or results are not all finite is not
    applied; parameters never become NaN or Inf. By default the step counter
    advances (so do the data and the randomness) and ``skipped_steps`` counts
    it. With ``halt_on_nonfinite`` the state halts instead: ``skipped_steps``
    becomes 1 and this and every later step leave the state as it was, so
    the host learns of it whenever it next reads the state (the bad step is
    ``state.step + 1``) without reading a flag after every step.

    Returns the new state, the batch's mean loss, per-example correctness
    (against the batch's own labels, before any mixing), the global norms of
    the gradients, the new parameters and the update, and whether the update
    was ``applied``."""
    target_rng, dropout_rng = jax.random.split(jax.random.fold_in(state.rng, state.step))
    images, context = objective.prepare(target_rng, batch["image"], batch["label"])
    gradients = functools.partial(_gradients, state, objective)
    if accumulate_steps == 1:
        loss, logits, model_state, grads = gradients(state.model_state, images, context, dropout_rng)
    else:
        loss, logits, model_state, grads = _accumulated_gradients(
            gradients, state.params, state.model_state, images, context, dropout_rng, accumulate_steps
        )
    updated = _with_moving_average(state.apply_gradients(grads=grads, model_state=model_state))
    norms = {  # big_vision's health signals: one global norm each
        "grad_norm": optax.tree.norm(grads),
        "param_norm": optax.tree.norm(updated.params),
        "update_norm": optax.tree.norm(jax.tree.map(jnp.subtract, updated.params, state.params)),
    }
    applied = jnp.isfinite(loss) & jnp.isfinite(norms["grad_norm"] + norms["param_norm"])
    applied &= all_finite(updated.model_state)
    if halt_on_nonfinite:
        applied &= state.skipped_steps == 0
        not_applied = state.replace(skipped_steps=jnp.ones_like(state.skipped_steps))
    else:
        not_applied = state.replace(step=state.step + 1, skipped_steps=state.skipped_steps + 1)
    state = jax.tree.map(lambda new, old: jnp.where(applied, new, old), updated, not_applied)
    predictions = jnp.argmax(two_class_logits(logits), axis=-1)
    return state, {"loss": loss, "correct": predictions == batch["label"], "applied": applied, **norms}


def _with_moving_average(state: TrainState) -> TrainState:
    """``state`` with its parameters' moving average moved towards them, at
    the decay ``min(ema_decay, (1 + step) / (10 + step))``: short at first,
    as timm's ModelEmaV2 warms it up, so early weights fade fast."""
    if state.ema_params is None:
        return state
    step = jnp.asarray(state.step, jnp.float32) - 1.0  # the step before this update
    decay = jnp.minimum(state.ema_decay, (1.0 + step) / (10.0 + step))
    return state.replace(ema_params=optax.incremental_update(state.params, state.ema_params, 1.0 - decay))


def _gradients(state: TrainState, objective: Objective, model_state, images, context, rng):
    """The mean loss over a (micro-)batch, its logits, the updated model state, and the gradients."""

    def mean_loss(params):
        logits, new_model_state = _forward(state.apply_fn, params, model_state, images, train=True, rng=rng)
        return jnp.mean(objective(logits, context)), (logits, new_model_state)

    (loss, (logits, model_state)), grads = jax.value_and_grad(mean_loss, has_aux=True)(state.params)
    return loss, logits, model_state, grads


def _accumulated_gradients(gradients, params, model_state, images, context, rng, micro_batches: int):
    """``gradients`` averaged over ``micro_batches`` equal micro-batches in a
    ``lax.scan``: the mean of their mean losses is the batch's mean loss, so
    the update equals the full batch's (BatchNorm statistics and dropout
    masks aside). Micro-batch ``j`` takes rows ``j, j + k, j + 2k, ...``: each
    device keeps its own rows."""
    size = images.shape[0]

    def split(x):  # [B, ...] -> [k, B / k, ...]
        return jnp.swapaxes(x.reshape(size // micro_batches, micro_batches, *x.shape[1:]), 0, 1)

    batched = {key: value for key, value in context.items() if value.ndim and value.shape[0] == size}
    shared = {key: value for key, value in context.items() if key not in batched}  # e.g. the mixing weight

    def body(carry, inputs):
        model_state, grad_sum, loss_sum = carry
        index, micro_images, micro_context = inputs
        loss, logits, model_state, grads = gradients(
            model_state, micro_images, {**shared, **micro_context}, jax.random.fold_in(rng, index)
        )
        return (model_state, jax.tree.map(jnp.add, grad_sum, grads), loss_sum + loss), logits

    zeros = jax.tree.map(jnp.zeros_like, params)
    inputs = (jnp.arange(micro_batches), split(images), jax.tree.map(split, batched))
    (model_state, grad_sum, loss_sum), logits = jax.lax.scan(body, (model_state, zeros, jnp.float32(0)), inputs)
    logits = jnp.swapaxes(logits, 0, 1).reshape(size, *logits.shape[2:])  # back in the batch's order
    return loss_sum / micro_batches, logits, model_state, jax.tree.map(lambda g: g / micro_batches, grad_sum)


def train_steps(
    state: TrainState,
    metrics: TrainMetrics,
    batches: Batch,
    objective: Objective,
    accumulate_steps: int = 1,
    halt_on_nonfinite: bool = False,
) -> tuple[TrainState, TrainMetrics]:
    """``train_step`` over the leading axis of ``batches`` (``lax.scan``: one
    dispatch for many steps); the metrics of their applied steps are merged
    into ``metrics``. Nothing here needs the host: it reads the state (and
    ``skipped_steps``) only when it chooses to."""

    def body(state, batch):
        return train_step(state, batch, objective, accumulate_steps, halt_on_nonfinite)

    if jax.tree.leaves(batches)[0].shape[0] == 1:
        # No loop for one step: XLA:CPU runs convolutions inside a loop body
        # several times slower (README, "Models").
        state, outputs = body(state, jax.tree.map(lambda x: x[0], batches))
        outputs = jax.tree.map(lambda x: x[None], outputs)
    else:
        state, outputs = jax.lax.scan(body, state, batches)
    metrics = metrics.merge(
        TrainMetrics.single_from_model_output(
            loss=outputs["loss"],
            correct=outputs["correct"],
            grad_norm=outputs["grad_norm"],
            param_norm=outputs["param_norm"],
            update_norm=outputs["update_norm"],
            learning_rate=current_learning_rate(state.opt_state),
            skipped_steps=state.skipped_steps.astype(jnp.float32),  # as TrainMetrics.empty(): no second compile
            applied=outputs["applied"],
        )
    )
    return state, metrics


def eval_step(state: TrainState, metrics: EvalMetrics, batch: Batch) -> EvalMetrics:
    """Adds one (masked) batch to the evaluation metrics of the predicted distribution."""
    logits, _ = _forward(state.apply_fn, state.evaluated_params, state.model_state, batch["image"], train=False)
    logits = two_class_logits(logits.astype(jnp.float32))
    labels = batch["label"]
    probs = jax.nn.softmax(logits)
    top_k = jax.lax.top_k(logits, min(5, logits.shape[-1]))[1]
    return metrics.merge(
        EvalMetrics.single_from_model_output(
            nll=optax.losses.softmax_cross_entropy_with_integer_labels(logits, labels),
            correct=jnp.argmax(logits, axis=-1) == labels,
            top5_correct=jnp.any(top_k == labels[:, None], axis=-1),
            brier=jnp.sum((probs - jax.nn.one_hot(labels, logits.shape[-1])) ** 2, axis=-1),
            probs=probs,
            labels=labels,
            mask=batch["mask"],
        )
    )


def predict_step(state: TrainState, images: jax.Array) -> jax.Array:
    """The log-probabilities of the predicted distribution over classes of
    each image (two classes for a single logit): ``log_softmax`` of the logits."""
    logits, _ = _forward(state.apply_fn, state.evaluated_params, state.model_state, images, train=False)
    return jax.nn.log_softmax(two_class_logits(logits.astype(jnp.float32)))


def _identity(images: jax.Array) -> jax.Array:
    return images.astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class Classifier:
    """What the Trainer trains (the role of Lightning's module): a linen
    ``model`` mapping images to logits, its ``optimizer`` and ``objective``,
    its input: ``image_shape`` (``[H, W, C]``) and ``normalize``, which
    turns raw pixels into the model's input on device; and ``ema_decay``,
    where its weights' moving average is kept and evaluated.

    Args:
        model: a linen module, ``model.apply(variables, images, train=...)`` -> logits.
        optimizer: an optax transformation (``jaxclf.optim``).
        objective: the loss and the targets it compares with (``jaxclf.objectives``).
        image_shape: one input image's shape, ``[H, W, C]``.
        normalize: raw pixels -> the model's input, applied on device.
        ema_decay: keep this moving average of the weights and evaluate it (None: off).
    """

    model: nn.Module
    optimizer: optax.GradientTransformation
    objective: Objective
    image_shape: tuple[int, ...]
    normalize: Callable[[jax.Array], jax.Array] = _identity
    ema_decay: float | None = None  # keep a moving average of the weights, and evaluate it

    def init(self, rng: jax.Array) -> TrainState:
        return create_train_state(self.model, self.optimizer, tuple(self.image_shape), rng, self.ema_decay)

    def abstract_state(self) -> TrainState:
        return abstract_train_state(self.model, self.optimizer, tuple(self.image_shape), self.ema_decay)

    def train_steps(
        self,
        state: TrainState,
        metrics: TrainMetrics,
        batches: Batch,
        objective: Objective,
        accumulate_steps: int = 1,
        halt_on_nonfinite: bool = False,
    ) -> tuple[TrainState, TrainMetrics]:
        """``train_steps`` on normalised ``batches`` (``objective`` is passed
        in, not closed over, so that a teacher's variables are not constants)."""
        images = self.normalize(batches["image"])
        return train_steps(state, metrics, {**batches, "image": images}, objective, accumulate_steps, halt_on_nonfinite)

    def eval_step(self, state: TrainState, metrics: EvalMetrics, batch: Batch) -> EvalMetrics:
        return eval_step(state, metrics, {**batch, "image": self.normalize(batch["image"])})

    def predict_step(self, state: TrainState, images: jax.Array) -> jax.Array:
        return predict_step(state, self.normalize(images))
