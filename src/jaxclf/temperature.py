"""Post-hoc temperature scaling (Guo et al. 2017): one temperature ``T`` for
every logit, fitted after training on the validation split by minimising the
NLL, makes the predicted probabilities ``softmax(z / T)`` calibrated without
changing a single prediction (dividing by ``T > 0`` keeps the argmax).

It is the softmax temperature of distillation again: ``T > 1`` softens an
over-confident model's distribution, ``T < 1`` sharpens an under-confident
one (label smoothing makes small models under-confident).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxclf.metrics import CalibrationBins


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log softmax`` over the last axis in NumPy's precision, in the stable
    form: subtracting the largest logit first keeps ``exp`` from overflowing.
    (scipy.special's would do; importing it took 0.2 s of every launch.)"""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    """``softmax`` over the last axis, in the stable form of ``log_softmax``."""
    return np.exp(log_softmax(logits))


def nll_at(inverse_temperature: float, log_probs: np.ndarray, labels: np.ndarray) -> float:
    """The mean NLL of ``softmax(inverse_temperature * log_probs)``: the objective temperature scaling minimises."""
    scaled = log_softmax(inverse_temperature * log_probs.astype(np.float64))
    return float(-scaled[np.arange(len(labels)), labels].mean())


def fit_temperature(log_probs: np.ndarray, labels: np.ndarray, iterations: int = 50) -> float:
    """The ``T`` that minimises the NLL of ``softmax(log_probs / T)``.

    Newton's method on ``b = 1 / T``, where the NLL is convex: its gradient
    is ``E_p[l] - l_y`` and its curvature ``Var_p[l]`` under ``p =
    softmax(b l)``; a step that does not lower the NLL is halved.
    (``log_probs`` serve as logits: they differ by a constant per example.)

    With no mistake among the examples the NLL keeps falling as ``T -> 0``
    and has no minimum: then ``T = 1`` (no scaling)."""
    if np.all(log_probs.argmax(-1) == labels):
        return 1.0
    values = np.maximum(log_probs.astype(np.float64), np.finfo(np.float64).min / 4)  # log(0) -> very negative
    chosen = values[np.arange(len(labels)), labels]
    inverse, current = 1.0, nll_at(1.0, values, labels)
    for _ in range(iterations):
        p = softmax(inverse * values)
        mean = (p * values).sum(-1)
        gradient = float((mean - chosen).mean())
        curvature = float((p * (values - mean[:, None]) ** 2).sum(-1).mean())
        if curvature <= 1e-12 or abs(gradient) <= 1e-10:
            break
        step = gradient / curvature
        while step and (candidate := inverse - step) > 0 and nll_at(candidate, values, labels) > current:
            step /= 2
        if inverse - step <= 0:
            step = inverse / 2
        inverse -= step
        current = nll_at(inverse, values, labels)
        if abs(step) < 1e-9 * inverse:
            break
    return 1.0 / inverse


def scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """NLL, ECE (``CalibrationBins``, as every evaluation) and Brier score of ``probs``."""
    rows = np.arange(len(labels))
    ece = CalibrationBins.from_model_output(probs=jnp.asarray(probs, jnp.float32), labels=jnp.asarray(labels))
    return {
        "nll": float(-np.log(np.maximum(probs[rows, labels], 1e-300)).mean()),
        "ece": float(ece.compute()),
        "brier": float(((probs - np.eye(probs.shape[-1])[labels]) ** 2).sum(-1).mean()),
    }


def calibrated(log_probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log_probs / temperature)``."""
    return softmax(log_probs.astype(np.float64) / temperature)
