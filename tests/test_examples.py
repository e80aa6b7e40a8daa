"""The gallery scripts run as a user runs them, and print what their oracles say."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import l2optim

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
_NUMBER = r"[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?"


def run_example(name: str, timeout: float = 540) -> str:
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


def diabetes_standardised() -> tuple[np.ndarray, np.ndarray]:
    """The data of the coupled-vs-decoupled example: features and target standardised."""
    X, y, _ = l2optim.data.load_diabetes()
    return (X - X.mean(0)) / X.std(0), (y - y.mean()) / y.std()


def test_coupled_vs_decoupled_reaches_ridge_and_heads_for_least_squares() -> None:
    out = run_example("coupled_vs_decoupled.py")
    X, y = diabetes_standardised()
    n, p = X.shape
    weight_decay, momentum = 0.5, 0.9  # as the example states
    ridge = np.linalg.solve(X.T @ X / n + weight_decay * np.eye(p), X.T @ y / n)
    least_squares = np.linalg.lstsq(X, y, rcond=None)[0]
    reference = fields(line_starting(out, "reference:"))
    assert reference["ridge_norm"] == pytest.approx(np.linalg.norm(ridge), abs=1e-4)
    assert reference["least_squares_norm"] == pytest.approx(np.linalg.norm(least_squares), abs=1e-4)
    # The box 1/λ holds least squares, so decoupled Adam and RMSprop may head there.
    assert np.abs(least_squares).max() < reference["box"] == pytest.approx(1 / weight_decay)
    runs = {
        (name, form): fields(line_starting(out, f"{name} {form}:"))
        for name in ("SGD", "Adam", "RMSprop")
        for form in ("coupled", "decoupled")
    }
    for name in ("SGD", "Adam", "RMSprop"):
        assert runs[name, "coupled"]["distance_to_ridge"] < 1e-3, name
    # Decoupled SGD: ridge at (1 − μ)λ, not at λ.
    assert runs["SGD", "decoupled"]["distance_to_ridge_for_sgdw"] < 1e-3
    ridge_for_sgdw = np.linalg.solve(
        X.T @ X / n + (1 - momentum) * weight_decay * np.eye(p), X.T @ y / n
    )
    assert runs["SGD", "decoupled"]["distance_to_ridge"] == pytest.approx(
        np.linalg.norm(ridge_for_sgdw - ridge), abs=1e-3
    )
    # Decoupled Adam and RMSprop leave ridge and are nearer least squares than ridge is.
    ridge_to_least_squares = np.linalg.norm(ridge - least_squares)
    for name in ("Adam", "RMSprop"):
        decoupled = runs[name, "decoupled"]
        assert decoupled["distance_to_ridge"] > 0.1, name
        assert decoupled["distance_to_least_squares"] < 0.5 * ridge_to_least_squares, name


def cosine_lrs(base_lr: float, steps: int) -> np.ndarray:
    """η_t of CosineAnnealingLR(T_max=steps, eta_min=0) at the steps t = 0 … steps − 1."""
    return base_lr * (1 + np.cos(np.pi * np.arange(steps) / steps)) / 2


def test_lr_schedule_scaling_shrinkage_is_the_product_of_the_decays() -> None:
    out = run_example("lr_schedule_scaling.py")
    steps = 400  # as the example states
    by_scaling: dict[str, list[dict[str, float]]] = {"lr": [], "schedule": []}
    for line in out.splitlines():
        if line.startswith("scaling="):
            by_scaling[line.split()[0].removeprefix("scaling=")].append(fields(line))
    assert [len(v) for v in by_scaling.values()] == [5, 5]
    for scaling, runs in by_scaling.items():
        for run in runs:
            lrs = cosine_lrs(run["base_lr"], steps)
            # s_t = η_t ("lr") or η_t/η₀ ("schedule"); the probe only ever decays.
            scale = lrs if scaling == "lr" else lrs / run["base_lr"]
            expected = np.prod(1 - scale * run["weight_decay"])
            assert run["total_shrinkage"] == pytest.approx(expected, rel=1e-4), (scaling, run)
    # "schedule": the same shrinkage at every base rate; "lr": orders of magnitude apart.
    schedule = [run["total_shrinkage"] for run in by_scaling["schedule"]]
    assert max(schedule) == pytest.approx(min(schedule), rel=1e-5)
    lr = [run["total_shrinkage"] for run in by_scaling["lr"]]
    assert lr == sorted(lr, reverse=True) and lr[0] / lr[-1] > 1e6


def loo_mse(X: np.ndarray, y: np.ndarray, lam: float) -> float:
    """Leave-one-out MSE of ridge with an unpenalised intercept, refitting n times."""
    errors = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        Xk, yk = X[keep], y[keep]
        mean_x, mean_y = Xk.mean(0), yk.mean()
        Xc = Xk - mean_x
        n = len(yk)
        w = np.linalg.solve(Xc.T @ Xc / n + lam * np.eye(X.shape[1]), Xc.T @ (yk - mean_y) / n)
        errors.append((X[i] - mean_x) @ w + mean_y - y[i])
    return float(np.mean(np.square(errors)))


def test_ridge_cv_curve_lambda_beats_no_penalty() -> None:
    """The FAQ's claim: on the diabetes data the CV error is lowest at a λ above zero."""
    out = run_example("ridge_cv_curve.py")
    printed = fields(line_starting(out, "ridge_cv:"))
    assert printed["lambda_1se"] >= printed["lambda_min"] > 0
    X, y, _ = l2optim.data.load_diabetes()
    X = (X - X.mean(0)) / X.std(0)
    at_min = loo_mse(X, y, printed["lambda_min"])
    assert at_min < loo_mse(X, y, 0.0)
    # A local minimum of the brute-force curve, within the printed precision.
    assert at_min <= loo_mse(X, y, printed["lambda_min"] * 1.5)
    assert at_min <= loo_mse(X, y, printed["lambda_min"] / 1.5)
    lowest = float(line_starting(out, "lowest CV").split(":")[1].split("±")[0])
    assert lowest == pytest.approx(at_min, abs=0.01)


def test_select_lambda_mlp_scores_are_those_of_one_process() -> None:
    """The workers' CV mean at λ_min is what the example's trainer gives in this process."""
    out = run_example("select_lambda_mlp.py")
    search = fields(line_starting(out, "select_lambda:"))
    best = fields(line_starting(out, "best evaluation:"))
    assert search["lo"] <= search["lambda_min"] <= search["lambda_1se"] <= search["hi"]
    # The trainer's bounds for AdamW at lr 0.01: λ·lr < 1, and they hold λ_1se, which the
    # old default bounds (1e-6, 1) did not.
    assert search["hi"] * 0.01 < 1 and search["lambda_1se"] > 1.0
    assert best["lam"] == pytest.approx(search["lambda_min"], rel=1e-3)
    assert search["evaluations"] > 5  # the grid of 5, then Brent
    X, y, _ = l2optim.data.load_diabetes()
    torch.manual_seed(0)  # the example's template model
    model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    trainer = l2optim.FoldTrainer(
        model,
        X.astype(np.float32),
        y.astype(np.float32),
        optimizer=l2optim.AdamW,
        optimizer_kwargs={"lr": 1e-2},
        epochs=15,
        batch_size=128,
        standardize=True,
    )
    scores = l2optim.kfold_objective(trainer, len(y), folds=5)(best["lam"])
    # λ is printed to six digits, so the scores agree to about as many.
    assert np.mean(scores) == pytest.approx(best["mean"], rel=1e-4)
    # The refit is the trainer's fit at λ_min, on every row.
    fitted = trainer.fit(best["lam"])
    with torch.no_grad():
        train_mse = float(((fitted(torch.as_tensor(X, dtype=torch.float32)) - torch.as_tensor(
            y, dtype=torch.float32)) ** 2).mean())
    assert train_mse == pytest.approx(fields(line_starting(out, "refit:"))["train_mse"], rel=1e-3)


def test_select_lambda_fast_spends_its_budget_and_beats_no_penalty() -> None:
    out = run_example("select_lambda_fast.py", timeout=300)
    race = fields(line_starting(out, "race:"))
    full = fields(line_starting(out, "full CV:"))
    rungs = [fields(line) for line in out.splitlines() if line.startswith("rung:")]
    # 342 rows in 5 folds train on 273 or 274 rows: 5 batches of 64 each, 25 per epoch
    # over the folds, against 6 for one epoch on all 342 rows.
    assert full["run_equivalents"] == pytest.approx(full["evaluations"] * 25 / 6, abs=0.01)
    assert race["run_equivalents"] <= 12 < full["run_equivalents"]
    assert race["optimizer_steps"] == pytest.approx(race["run_equivalents"] * 30 * 6, abs=1)
    # The rungs train longer and race fewer λ; the first trains a quarter of 30 epochs.
    assert rungs[0]["epochs"] >= 30 / 4
    assert all(a["epochs"] < b["epochs"] for a, b in zip(rungs, rungs[1:], strict=False))
    assert all(a["racing"] > b["racing"] for a, b in zip(rungs, rungs[1:], strict=False))
    test = {
        fields(line)["lam"]: fields(line)["mse"]
        for line in out.splitlines()
        if line.startswith("test:")
    }
    # On rows neither search saw, the raced λ beats no penalty.
    assert test[race["lambda_chosen"]] < test[0.0]


def test_decay_rules_agree_at_zero_and_shrink_as_their_rules_say() -> None:
    out = run_example("decay_rules.py", timeout=300)
    rows = {
        (line.split()[0].split("=")[1], fields(line)["lam"]): fields(line)
        for line in out.splitlines()
        if line.startswith("rule=")
    }
    rules, lambdas = {r for r, _ in rows}, sorted({lam for _, lam in rows})
    assert rules == {"plain", "cautious", "corrected"} and lambdas[0] == 0
    # λ = 0: one optimizer, whatever the rule.
    assert len({rows[rule, 0.0]["test_mse"] for rule in rules}) == 1
    # The probe (zero gradient) shrinks by ∏(1 − s_t·λ): s_t = lr_t for plain and cautious
    # (a zero step agrees with every sign), lr_t²/lr_max for corrected. The schedule:
    # 40 epochs of ⌈342/32⌉ = 11 steps, a linear warm-up over 10% of them, then a cosine.
    total, warm, peak = 40 * 11, 44, 1e-2
    lrs = [
        peak * ((s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm))))
        for s in range(total)
    ]
    for lam in lambdas[1:]:
        plain = math.prod(1 - lr * lam for lr in lrs)
        corrected = math.prod(1 - lr * lr / peak * lam for lr in lrs)
        for rule, expected in [("plain", plain), ("cautious", plain), ("corrected", corrected)]:
            assert rows[rule, lam]["shrinkage"] == pytest.approx(expected, rel=2e-3, abs=1e-30)
        # Every decay helps here: λ → 0 is the worst of the grid for each rule.
        assert all(rows[rule, lam]["test_mse"] < rows[rule, 0.0]["test_mse"] for rule in rules)
