"""Temperature scaling: the fitted T minimises the validation NLL (checked against SciPy's own minimiser)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax as scipy_log_softmax
from scipy.special import logsumexp

from jaxclf.temperature import calibrated, fit_temperature, log_softmax, scores


def reference_nll(temperature: float, logits: np.ndarray, labels: np.ndarray) -> float:
    scaled = logits / temperature
    scaled = scaled - scaled.max(-1, keepdims=True)
    log_z = np.log(np.exp(scaled).sum(-1))
    return float((log_z - scaled[np.arange(len(labels)), labels]).mean())


def test_log_softmax_is_scipys_even_where_exp_overflows():
    logits = np.array([[1000.0, 999.0, -1000.0], [0.5, -0.25, 2.0], [-800.0, -801.0, -900.0]])
    np.testing.assert_allclose(log_softmax(logits), scipy_log_softmax(logits, axis=-1), rtol=1e-12, atol=1e-300)


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 3.0])
def test_the_fitted_temperature_is_scipys_minimiser_of_the_nll(true_temperature):
    rng = np.random.default_rng(int(true_temperature * 10))
    logits = rng.normal(scale=4.0, size=(3000, 10))
    shifted = logits / true_temperature
    probs = np.exp(shifted - shifted.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    labels = np.array([rng.choice(10, p=row) for row in probs])
    log_probs = logits - logsumexp(logits, axis=-1, keepdims=True)  # what the model gives: log_softmax(z)
    reference = minimize_scalar(reference_nll, bounds=(0.05, 20), args=(logits, labels), method="bounded",
                                options={"xatol": 1e-7}).x  # fmt: skip
    fitted = fit_temperature(log_probs.astype(np.float32), labels)
    assert fitted == pytest.approx(reference, rel=1e-3)
    assert fitted == pytest.approx(true_temperature, rel=0.1)  # and it finds the temperature the labels came from


def test_scaling_keeps_every_prediction_and_lowers_the_nll_of_an_over_confident_model():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=8.0, size=(500, 5))  # far too sharp for labels drawn at temperature 4
    labels = np.array([rng.choice(5, p=np.exp(row / 4) / np.exp(row / 4).sum()) for row in logits])
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    temperature = fit_temperature(log_probs, labels)
    before, after = scores(calibrated(log_probs, 1.0), labels), scores(calibrated(log_probs, temperature), labels)
    assert temperature > 1 and after["nll"] < before["nll"] and after["ece"] < before["ece"]
    np.testing.assert_array_equal(calibrated(log_probs, temperature).argmax(-1), logits.argmax(-1))


def test_without_a_validation_mistake_there_is_no_minimum_and_no_scaling():
    rng = np.random.default_rng(1)
    logits = rng.normal(scale=3.0, size=(200, 10))
    log_probs = logits - logsumexp(logits, axis=-1, keepdims=True)
    assert fit_temperature(log_probs, logits.argmax(-1)) == 1.0  # every prediction right: T -> 0 would win


def test_a_finished_run_reports_its_temperature_and_calibrated_test_scores(finished_run):
    summary = json.loads((finished_run / "summary.json").read_text())
    assert summary["temperature"] > 0
    assert set(summary["test_calibrated"]) == {"nll", "ece", "brier"}
