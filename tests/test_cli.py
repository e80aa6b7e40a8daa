"""The ``l2optim`` command, run as users run it: ``python -m l2optim`` in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

import l2optim
from l2optim._cli import main

# Few, short epochs: these runs check the plumbing; the trainer's numbers are checked
# against closed forms in test_trainer.py.
FAST = ["--epochs", "3", "--folds", "3"]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "l2optim", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """A CSV of 40 rows: y = x1 − 2·x2 + noise, and a constant column."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    y = x[:, 0] - 2 * x[:, 1] + 0.5 * rng.normal(size=40)
    path = tmp_path_factory.mktemp("cli") / "data.csv"
    rows = ["x1,x2,const,y"] + [
        f"{a:.6f},{b:.6f},1,{c:.6f}" for (a, b), c in zip(x, y, strict=True)
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


def assert_search_report(report: dict, bounds: tuple[float, float], folds: int) -> None:
    lo, hi = bounds
    assert lo <= report["lambda"] <= hi
    lambdas = [row["lambda"] for row in report["evaluations"]]
    assert lambdas == sorted(lambdas) and lambdas[0] == pytest.approx(lo)
    assert lambdas[-1] == pytest.approx(hi)
    # Seven grid points, then Brent's evaluations between the best one's neighbours.
    assert len(lambdas) > 7
    assert report["lambda_min"] in lambdas and report["lambda_1se"] in lambdas
    means = {row["lambda"]: row["mean"] for row in report["evaluations"]}
    assert means[report["lambda_min"]] == min(means.values())  # ties: any of them
    for row in report["evaluations"]:
        assert len(row["scores"]) == folds
        assert row["mean"] == pytest.approx(np.mean(row["scores"]))
        assert row["se"] == pytest.approx(np.std(row["scores"], ddof=1) / np.sqrt(folds))


def read_standardised(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The features and the target ``y`` of the table, standardised as the command does."""
    values = np.loadtxt(path, delimiter=",", skiprows=1)
    sd = values.std(axis=0)
    values = (values - values.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    return values[:, :-1], values[:, -1]


def test_select_lambda_on_a_csv_reports_ridge_cv_at_the_library_lambda(table):
    # Linear model, coupled SGD (momentum 0.9), full batch, converged: the CV curve is
    # ridge_cv's at the same λ (float32 training, hence rel=1e-4).
    done = run_cli(
        "select-lambda",
        str(table),
        "--target",
        "y",
        *FAST,
        "--epochs",
        "300",
        "--batch-size",
        "40",
        "--lr",
        "0.1",
        "--bounds",
        "1e-4",
        "5",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert_search_report(report, (1e-4, 5.0), folds=3)
    assert report["n_samples"] == 40 and report["n_features"] == 3 and not report["decoupled"]
    assert "half the MSE" in report["loss"]
    X, y = read_standardised(table)
    # The command's folds (--seed 0), laid end to end: ridge_cv's contiguous folds.
    order = np.concatenate([test for _, test in l2optim.kfold_splits(40, 3, random_state=0)])
    lambdas = [row["lambda"] for row in report["evaluations"]]
    oracle = l2optim.ridge_cv(X[order], y[order], lambdas=lambdas, cv=3)
    assert oracle.lambdas.tolist() == lambdas
    means = [row["mean"] for row in report["evaluations"]]
    assert means == pytest.approx(oracle.cv_mean.tolist(), rel=1e-4)
    # A 2-feature linear signal with little noise: far better than predicting the mean.
    assert min(row["mean"] for row in report["evaluations"]) < 0.3


def test_demo_writes_a_plot_and_a_log_that_a_rerun_reuses(tmp_path):
    log, plot = tmp_path / "search.jsonl", tmp_path / "cv.png"
    args = ["select-lambda", "--demo", *FAST, "--rule", "1se", "--json", "--log", str(log)]
    first = run_cli(*args, "--plot", str(plot))
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert_search_report(report, (1e-5, 1.0), folds=3)
    assert (report["data"], report["target"], report["n_samples"]) == (
        "diabetes.csv",
        "progression",
        442,
    )
    assert report["lambda"] == report["lambda_1se"] >= report["lambda_min"]
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert len(log.read_text().splitlines()) == len(report["evaluations"])

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    # Every evaluation comes back from the log, timings included: nothing was retrained.
    assert json.loads(again.stdout)["evaluations"] == report["evaluations"]
    assert len(log.read_text().splitlines()) == len(report["evaluations"])


def test_table_output_and_two_worker_processes(table):
    done = run_cli(
        "select-lambda",
        str(table),
        "--target",
        "y",
        *FAST,
        "--model",
        "mlp",
        "--optimizer",
        "adam",
        "--decoupled",
        "--workers",
        "2",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(
        "data.csv: 40 rows, 3 features, target 'y'; mlp trained with adam (decoupled"
    )
    assert sum("<- min" in line for line in lines) == 1
    assert lines[-1].startswith("chosen lambda (min): ")
    assert 1e-5 <= float(lines[-1].split(": ")[1]) <= 1.0


def bad_files(tmp: Path) -> dict[str, Path]:
    contents = {
        "empty": "",
        "header": "a,b\n",
        "text": "a,b,y\n1,2,3\n4,five,6\n",
        "ragged": "a,y\n1,2\n3\n",
    }
    for name, text in contents.items():
        (tmp / f"{name}.csv").write_text(text)
    return {name: tmp / f"{name}.csv" for name in contents}


def assert_one_line_usage_error(status: int, stdout: str, stderr: str, message: str) -> None:
    assert status == 2, stderr
    assert stdout == ""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("l2optim: error: ") and message in lines[0], lines[0]


def test_each_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path, table):
    # As users run it, in a subprocess: a check before training, and the two failures
    # that only training finds. The other checks run in process below.
    csv = ["select-lambda", str(table), "--target", "y"]
    cases = [
        (["select-lambda", str(tmp_path / "missing.csv"), "--target", "y"], "no such file"),
        # Every λ of the grid diverges: nothing to refine, and the message says what to try.
        ([*csv, *FAST, "--lr", "1e30"], "try a smaller --lr"),
        # Decoupled decay with lr·λ = 1 would zero every weight: the optimizer refuses.
        ([*csv, *FAST, "--decoupled", "--bounds", "1", "1000"], "training failed at lambda=100"),
    ]
    # Each run mostly waits for torch to import: run them side by side.
    with ThreadPoolExecutor(len(cases)) as pool:
        runs = list(pool.map(lambda case: run_cli(*case[0]), cases))
    for (_, message), done in zip(cases, runs, strict=True):
        assert_one_line_usage_error(done.returncode, done.stdout, done.stderr, message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{table}", "--target", "z"], "unknown column 'z' for --target; the columns are: x1, x2"),
        (["{text}", "--target", "y"], "column 'b', row 2 (line 3): 'five' is not a number"),
        (["{empty}", "--target", "y"], "the file is empty"),
        (["{table}", "--target", "y", "--bounds", "1", "0.1"], "0 < LO < HI, got 1 0.1"),
        (["{table}", "--target", "y", "--bounds", "0", "1"], "0 < LO < HI, got 0 1"),
        (
            ["{table}", "--target", "y", "--folds", "41"],
            "--folds must be between 2 and the number of rows (40), got 41",
        ),
        (["{header}", "--target", "b"], "a header row but no data rows"),
        (["{ragged}", "--target", "y"], "row 2 (line 3) has 1 fields, the header has 2"),
        (["{text}", "--target", "y", "--folds", "1"], "--folds must be at least 2, got 1"),
        (["{text}", "--target", "y", "--bounds", "1e-3", "x"], "invalid float value: 'x'"),
        (["{text}"], "--target COL is required with DATA.csv"),
        (["{text}", "--demo"], "give either DATA.csv with --target COL, or --demo"),
        (["--demo", "--lr", "-1"], "--lr must be a positive number, got -1"),
        (["--demo", "--target", "nope"], "the columns are: age, sex, bmi, bp, s1, s2, s3"),
        (["--demo", "--workers", "0"], "--workers must be at least 1, got 0"),
        (["--demo", "--plot", "{missing}/cv.png"], "does not exist"),
        (["--demo", "--budget", "5"], "--budget needs --fast"),
        (["--demo", "--fast", "--budget", "0"], "--budget must be a positive number, got 0"),
        (["--demo", "--fast", "--log", "{missing}.jsonl"], "--log does not apply to --fast"),
        (["--demo", "--fast", "--workers", "2"], "--workers does not apply to --fast"),
        (["--demo", "--fast", "--budget", "0.001"], "budget must be at least"),
    ],
)
def test_more_bad_inputs_in_process(tmp_path, capsys, table, args, message):
    # The same entry point, called in this process: every check runs before any training.
    files = {**bad_files(tmp_path), "missing": tmp_path / "missing", "table": table}
    argv = ["select-lambda", *(a.format(**files) for a in args)]
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    captured = capsys.readouterr()
    assert_one_line_usage_error(stopped.value.code, captured.out, captured.err, message)


def test_shipped_demo_data_is_the_diabetes_table():
    X, y, names = l2optim.data.load_diabetes()
    assert X.shape == (442, 10) and y.shape == (442,)
    assert names == ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    # Efron et al. (2004), table 1: the first patient, and the range of the response.
    assert X[0].tolist() == [59, 2, 32.1, 101, 157, 93.2, 38, 4, 4.8598, 87] and y[0] == 151
    assert (y.min(), y.max()) == (25, 346)


def test_fast_races_within_its_budget_with_the_librarys_numbers(table):
    done = run_cli(
        "select-lambda",
        str(table),
        "--target",
        "y",
        "--epochs",
        "8",
        "--fast",
        "--budget",
        "6",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    race = report["race"]
    assert race["run_equivalents"] <= 6
    assert race["run_equivalents"] == pytest.approx(race["optimizer_steps"] / race["steps_per_run"])
    # The same race through the library, on the command's standardised data and folds.
    rows = np.loadtxt(table, delimiter=",", skiprows=1)
    columns = (rows - rows.mean(0)) / np.where(rows.std(0) > 0, rows.std(0), 1.0)
    trainer = l2optim.FoldTrainer(
        partial(torch.nn.Linear, 3, 1),
        torch.as_tensor(columns[:, :3], dtype=torch.float32),
        torch.as_tensor(columns[:, 3], dtype=torch.float32),
        optimizer=l2optim.SGD,
        optimizer_kwargs={"momentum": 0.9, "lr": 0.01},
        epochs=8,
        batch_size=64,
    )
    expected = l2optim.select_lambda_fast(trainer, (1e-5, 1.0), budget=6, random_state=0)
    assert report["lambda_min"] == pytest.approx(expected.lambda_min)
    means = [row["mean"] for row in report["evaluations"]]
    np.testing.assert_allclose(means, expected.final.means, rtol=1e-6)
    assert race["epochs"] == expected.final.epochs


def test_fast_prints_its_cost_in_training_runs(table):
    done = run_cli("select-lambda", str(table), "--target", "y", *FAST, "--fast", "--budget", "8")
    assert done.returncode == 0, done.stderr
    cost = [line for line in done.stdout.splitlines() if line.startswith("cost: ")]
    assert len(cost) == 1 and "training-run equivalents" in cost[0]
    assert float(cost[0].split()[1]) <= 8
