"""The gallery scripts run as a user runs them, and print what their oracles say."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
_NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"


def run_example(name: str, timeout: float = 120) -> str:
    """Run ``examples/<name>`` in a fresh interpreter, without a display; its stdout."""
    env = dict(os.environ, MPLBACKEND="Agg")
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=EXAMPLES,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def fields(line: str) -> dict[str, float]:
    """The ``key=number`` pairs of one printed line."""
    return {key: float(value) for key, value in re.findall(rf"(\w+)=({_NUMBER})", line)}


def line_starting(output: str, prefix: str) -> str:
    matches = [line for line in output.splitlines() if line.startswith(prefix)]
    assert len(matches) == 1, f"expected one line starting {prefix!r} in:\n{output}"
    return matches[0]


def ridge_with_free_intercept(x: np.ndarray, y: np.ndarray, weight_decay: float) -> np.ndarray:
    """(w, b) from the normal equations of (1/2n)‖w·x + b − y‖² + (λ/2)·w², uncentred."""
    design = np.column_stack([x, np.ones_like(x)])
    n = len(x)
    hessian = design.T @ design / n + weight_decay * np.diag([1.0, 0.0])
    return np.linalg.solve(hessian, design.T @ y / n)


@pytest.fixture(scope="module")
def linear_regression_output() -> str:
    return run_example("linear_regression.py")


def test_linear_regression_matches_ridge(linear_regression_output: str) -> None:
    out = linear_regression_output
    data = fields(line_starting(out, "data:"))
    settings = fields(line_starting(out, "settings:"))
    n_train, n_test = int(data["n_train"]), int(data["n_test"])
    # The recipe the example's docstring states.
    rng = np.random.default_rng(int(data["seed"]))
    x = rng.uniform(-1.0, 1.0, size=n_train + n_test)
    y = 2.0 * x + 1.0 + data["noise"] * rng.standard_normal(n_train + n_test)
    x_train, y_train, x_test, y_test = x[:n_train], y[:n_train], x[n_train:], y[n_train:]
    weight_decay, momentum = settings["weight_decay"], settings["momentum"]

    def mse(w: float, b: float, x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((w * x + b - y) ** 2))

    # Coupled λ and decoupled λ/(1 − μ) reach ridge(λ); decoupled λ reaches ridge((1 − μ)λ).
    expected = {
        f"closed-form ridge, weight_decay={weight_decay:g}": weight_decay,
        f"coupled SGD, weight_decay={weight_decay:g}": weight_decay,
        f"decoupled SGDW, weight_decay={weight_decay:g}": (1 - momentum) * weight_decay,
        f"decoupled SGDW, weight_decay={weight_decay / (1 - momentum):g}": weight_decay,
    }
    for prefix, ridge_strength in expected.items():
        printed = fields(line_starting(out, prefix + ":").removeprefix(prefix))
        w, b = ridge_with_free_intercept(x_train, y_train, ridge_strength)
        assert printed["w"] == pytest.approx(w, abs=2e-6), prefix
        assert printed["b"] == pytest.approx(b, abs=2e-6), prefix
        assert printed["train_mse"] == pytest.approx(mse(w, b, x_train, y_train), abs=2e-6)
        assert printed["test_mse"] == pytest.approx(mse(w, b, x_test, y_test), abs=2e-6)
    # The penalty is felt: the same λ in the two forms gives different slopes.
    slopes = [fields(line_starting(out, p + ":").removeprefix(p))["w"] for p in expected]
    assert abs(slopes[1] - slopes[2]) > 0.1


def test_ridge_vs_box_adamw_reaches_the_box_and_adam_reaches_ridge() -> None:
    out = run_example("ridge_vs_box.py")
    box = fields(line_starting(out, "box:"))
    ridge = fields(line_starting(out, "ridge:"))
    least_squares = fields(line_starting(out, "least squares:"))
    # The box binds: least squares lies outside it, so the two estimators differ.
    assert abs(least_squares["w1"]) > box["bound"]
    assert abs(box["w1"]) == pytest.approx(box["bound"], abs=1e-9)
    assert fields(line_starting(out, "Adam:"))["distance_to_ridge"] < 1e-3
    adamw = fields(line_starting(out, "AdamW:"))
    assert adamw["distance_to_box"] < 1e-2
    assert adamw["distance_to_ridge"] > 0.1
    assert max(abs(adamw["w1"]), abs(adamw["w2"])) <= box["bound"] + 1e-3
    assert ridge["w1"] != pytest.approx(box["w1"], abs=0.1)


def test_norms_and_biases_decayed_bias_is_shrunk_mean() -> None:
    out = run_example("norms_and_biases.py")
    decayed = fields(line_starting(out, "every parameter decayed:"))
    grouped = fields(line_starting(out, "decay_groups:"))
    for run in (decayed, grouped):
        assert run["bias"] == pytest.approx(run["closed_form_bias"], abs=1e-5)
        assert run["test_mse"] == pytest.approx(run["closed_form_test_mse"], abs=1e-5)
    # Centred features: the undecayed bias is the mean target, the decayed one ȳ/(1 + λ).
    assert grouped["bias"] == pytest.approx(float(out.split("mean training target:")[1]), abs=1e-5)
    assert decayed["bias"] == pytest.approx(grouped["bias"] / (1 + 0.5), abs=1e-5)  # λ = 0.5 there
    assert decayed["test_mse"] > grouped["test_mse"]
