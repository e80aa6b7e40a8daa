"""The ``l2optim`` command, run as users run it: ``python -m l2optim`` in a subprocess."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import l2optim
from l2optim._cli import main

# Few, short epochs: these runs check the plumbing; the trainer's numbers are checked
# against closed forms in tests/selection/test_trainer.py.
FAST = ["--epochs", "3", "--folds", "3"]


def run_cli(*args: str, timeout: float = 540) -> subprocess.CompletedProcess[str]:
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
    """A trained search's report: grid then Brent inside ``bounds``, per-fold scores."""
    lo, hi = bounds
    assert report["method"] == "trained"
    assert lo <= report["lambda"] <= hi
    lambdas = [row["lambda"] for row in report["evaluations"]]
    assert lambdas == sorted(lambdas) and lambdas[0] == pytest.approx(lo)
    assert lambdas[-1] == pytest.approx(hi)
    assert report["lambda_min"] in lambdas and report["lambda_1se"] in lambdas
    means = {row["lambda"]: row["mean"] for row in report["evaluations"]}
    assert means[report["lambda_min"]] == min(means.values())  # ties: any of them
    for row in report["evaluations"]:
        assert len(row["scores"]) == folds
        assert row["mean"] == pytest.approx(np.mean(row["scores"]))
        assert row["se"] == pytest.approx(np.std(row["scores"], ddof=1) / np.sqrt(folds))


def read_table(path: Path, sep: str = ",") -> tuple[np.ndarray, np.ndarray]:
    """The features and the target (last column) of a table, as they are in the file."""
    values = np.loadtxt(path, delimiter=sep, skiprows=1)
    return values[:, :-1], values[:, -1]


def brute_force_fold_mse(x, y, train, test, lam):
    """Each fold as a scikit-learn Pipeline would do it: scale x and y on the training rows,
    fit ridge there, predict the test rows in y's units; their mean squared error."""
    x_mean, x_sd = x[train].mean(0), x[train].std(0)
    x_sd = np.where(x_sd > 0, x_sd, 1.0)
    y_mean, y_sd = y[train].mean(), y[train].std()
    xs, ys = (x[train] - x_mean) / x_sd, (y[train] - y_mean) / y_sd
    w = np.linalg.solve(xs.T @ xs / len(train) + lam * np.eye(x.shape[1]), xs.T @ ys / len(train))
    return float(np.mean((((x[test] - x_mean) / x_sd) @ w * y_sd + y_mean - y[test]) ** 2))


def test_ridge_is_answered_by_ridge_cv_on_the_commands_folds(table):
    for seed in ("4",):  # the default seed, 0, in the demo's test
        done = run_cli("select-lambda", str(table), "--target", "y", "--folds", "3",
                       "--seed", seed, "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["method"] == "ridge_cv"
        X, y = read_table(table)
        splits = l2optim.kfold_splits(40, 3, random_state=int(seed))
        oracle = l2optim.ridge_cv(X, y, cv=splits, standardize=True)
        assert report["lambda_min"] == oracle.lambda_min
        assert report["lambda_1se"] == oracle.lambda_1se
        assert [row["lambda"] for row in report["evaluations"]] == oracle.lambdas.tolist()
        assert [row["mean"] for row in report["evaluations"]] == oracle.cv_mean.tolist()
        # Each point of the curve is the brute-force per-fold standardised refit.
        row = report["evaluations"][len(report["evaluations"]) // 2]
        folds = [brute_force_fold_mse(X, y, tr, te, row["lambda"]) for tr, te in splits]
        assert row["mean"] == pytest.approx(np.mean(folds), rel=1e-9)


def test_the_trained_search_standardises_inside_each_fold(table):
    # Linear model, coupled SGD (momentum 0.9), full batch, converged: each fold's score is
    # the brute-force per-fold standardised ridge (float32 training, hence rel=1e-4).
    done = run_cli(
        "select-lambda", str(table), "--target", "y", "--trained", *FAST,
        "--epochs", "300", "--batch-size", "40", "--lr", "0.1", "--bounds", "1e-4", "5",
        "--n-grid", "4", "--xtol", "1", "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert_search_report(report, (1e-4, 5.0), folds=3)
    assert report["n_samples"] == 40 and report["n_features"] == 3 and not report["decoupled"]
    X, y = read_table(table)
    splits = l2optim.kfold_splits(40, 3, random_state=0)
    for row in report["evaluations"]:
        expected = [brute_force_fold_mse(X, y, tr, te, row["lambda"]) for tr, te in splits]
        assert row["scores"] == pytest.approx(expected, rel=1e-4)
    # A 2-feature linear signal with little noise: far better than predicting the mean.
    assert min(row["mean"] for row in report["evaluations"]) < 0.3 * np.var(y)


def test_demo_is_the_closed_form_and_writes_a_plot(tmp_path):
    plot = tmp_path / "cv.png"
    done = run_cli("select-lambda", "--demo", "--rule", "1se", "--json", "--plot", str(plot))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["data"], report["target"], report["n_samples"]) == (
        "diabetes.csv", "progression", 442)
    X, y, _ = l2optim.data.load_diabetes()
    oracle = l2optim.ridge_cv(X, y, cv=l2optim.kfold_splits(442, 5), standardize=True)
    assert report["lambda"] == report["lambda_1se"] == oracle.lambda_1se
    assert report["lambda_min"] == oracle.lambda_min and report["at_edge"] is None
    assert plot.read_bytes().startswith(b"\x89PNG")


def test_a_trained_search_writes_a_log_that_a_rerun_reuses(tmp_path):
    log = tmp_path / "search.jsonl"
    args = ["select-lambda", "--demo", "--trained", *FAST, "--json", "--log", str(log),
            "--n-grid", "4", "--xtol", "0.5"]
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    trainer = l2optim.FoldTrainer(torch.nn.Linear(10, 1), *l2optim.data.load_diabetes()[:2],
                                  optimizer_kwargs={"lr": 0.01, "momentum": 0.9}, epochs=3,
                                  batch_size=64, standardize=True)
    n_train = max(len(train) for train, _ in l2optim.kfold_splits(442, 3))
    bounds = trainer.default_bounds(n_train)
    assert_search_report(report, bounds, folds=3)
    assert report["bounds"] == pytest.approx(list(bounds))
    grid = np.geomspace(*bounds, 4)
    assert sum(np.isclose(row["lambda"], grid).any() for row in report["evaluations"]) == 4
    # One line per evaluation after the first, which records the options it was made with.
    assert len(log.read_text().splitlines()) == 1 + len(report["evaluations"])

    again = run_cli(*args)
    assert again.returncode == 0, again.stderr
    # Every evaluation comes back from the log, timings included: nothing was retrained.
    assert json.loads(again.stdout)["evaluations"] == report["evaluations"]
    assert len(log.read_text().splitlines()) == 1 + len(report["evaluations"])

    # With other training options the log's scores are another objective's: refused.
    written = log.read_text()
    other = run_cli(*[("40" if a == "3" and args[i - 1] == "--epochs" else a)
                      for i, a in enumerate(args)])
    assert other.returncode != 0
    assert "holds the scores of another setting: --epochs 3 (now 40)" in other.stderr
    assert log.read_text() == written


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
    assert sum("<- lambda_min" in line for line in lines) == 1
    assert lines[-1].startswith("chosen lambda (min): ")
    assert float(lines[-1].split(": ")[1]) > 0


def test_closed_form_table_says_which_method(table):
    done = run_cli("select-lambda", str(table), "--target", "y", "--folds", "3")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "ridge by the closed form (l2optim.ridge_cv)" in lines[0]
    assert "3-fold CV" in lines[0] and "standardised within each training fold" in lines[0]
    assert sum("<- lambda_min" in line for line in lines) == 1


def test_a_lambda_on_the_edge_is_noted(table):
    # The best λ of this signal is far below 1: the search over [1, 5] ends on its lower edge.
    done = run_cli("select-lambda", str(table), "--target", "y", "--bounds", "1", "5")
    assert done.returncode == 0, done.stderr
    assert "note: lambda_min is at the lower end of the search bounds [1, 5]" in done.stdout
    assert "Warning" not in done.stderr
    as_json = run_cli("select-lambda", str(table), "--target", "y", "--bounds", "1", "5",
                      "--json")
    report = json.loads(as_json.stdout)
    assert report["at_edge"] == "lower" and report["lambda_min"] == pytest.approx(1.0)


def test_a_semicolon_separated_file_is_read_and_a_wrong_sep_is_explained(tmp_path, table):
    semicolons = tmp_path / "semicolons.csv"
    semicolons.write_text(table.read_text().replace(",", ";"))
    done = run_cli("select-lambda", str(semicolons), "--target", "y", "--folds", "3", "--json")
    assert done.returncode == 0, done.stderr
    X, y = read_table(table)
    oracle = l2optim.ridge_cv(X, y, cv=l2optim.kfold_splits(40, 3), standardize=True)
    assert json.loads(done.stdout)["lambda_min"] == oracle.lambda_min
    wrong = run_cli("select-lambda", str(semicolons), "--target", "y", "--sep", ",")
    assert_one_line_usage_error(wrong.returncode, wrong.stdout, wrong.stderr,
                                "the header looks separated by ';'")


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
        ([*csv, "--trained", *FAST, "--lr", "1e30"], "try a smaller learning rate"),
        # Decoupled decay with lr·λ = 1 would zero every weight: the optimizer refuses.
        ([*csv, "--trained", *FAST, "--decoupled", "--bounds", "1", "1000"],
         "training failed at lambda=100"),
    ]
    # Each run mostly waits for torch to import: run them side by side.
    with ThreadPoolExecutor(len(cases)) as pool:
        runs = list(pool.map(lambda case: run_cli(*case[0]), cases))
    for (_, message), done in zip(cases, runs, strict=True):
        assert_one_line_usage_error(done.returncode, done.stdout, done.stderr, message)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{table}", "--target", "z"], "unknown column 'z'; the columns are: x1, x2"),
        (["{text}", "--target", "y"], "column 'b', row 2 (line 3): 'five' is not a number"),
        (["{empty}", "--target", "y"], "the file is empty"),
        (["{table}", "--target", "y", "--bounds", "1", "0.1"],
         "bounds must satisfy 0 < lo < hi < inf, got (1.0, 0.1)"),
        (["{table}", "--target", "y", "--bounds", "0", "1"], "0 < lo < hi < inf, got (0.0, 1.0)"),
        (
            ["{table}", "--target", "y", "--folds", "41"],
            "folds must be an integer in [2, n_samples=40], got 41",
        ),
        (["{table}", "--target", "y", "--trained", "--folds", "41"],
         "folds must be an integer in [2, n_samples=40], got 41"),
        (["{header}", "--target", "b"], "a header row but no data rows"),
        (["{ragged}", "--target", "y"], "row 2 (line 3) has 1 fields, the header has 2"),
        (["{table}", "--target", "y", "--folds", "1"],
         "folds must be an integer in [2, n_samples=40], got 1"),
        (["{text}", "--target", "y", "--bounds", "1e-3", "x"], "invalid float value: 'x'"),
        (["{text}"], "--target COL is required with DATA.csv"),
        (["{text}", "--demo"], "give either DATA.csv with --target COL, or --demo"),
        (["--demo", "--trained", "--lr", "-1"], "Invalid learning rate: -1"),
        (["--demo", "--target", "nope"], "the columns are: age, sex, bmi, bp, s1, s2, s3"),
        (["--demo", "--trained", "--workers", "0"], "workers must be an integer >= 1, got 0"),
        (["--demo", "--trained", "--n-grid", "2"], "n_grid must be an integer >= 3, got 2"),
        (["--demo", "--workers", "2"], "--workers applies to the trained search"),
        (["--demo", "--lr", "0.1"], "--lr applies to the trained search"),
        (["--demo", "--plot", "{missing}/cv.png"], "does not exist"),
        (["--demo", "--sep", ";;"], "sep must be one character"),
        (["--demo", "--budget", "5"], "--budget applies to --fast only"),
        (["--demo", "--fast", "--budget", "0"], "budget must be > 0, got 0.0"),
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


# In process, as users' scripts may call main(): no interpreter to start for each.
@pytest.mark.filterwarnings("ignore::l2optim.LambdaAtEdgeWarning")  # 8 epochs: λ at the top
def test_fast_races_within_its_budget_with_the_librarys_numbers(table, capsys):
    args = ["--target", "y", "--epochs", "8", "--fast", "--budget", "6"]
    assert main(["select-lambda", str(table), *args, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    race = report["race"]
    assert report["method"] == "race" and race["run_equivalents"] <= 6
    assert race["run_equivalents"] == pytest.approx(race["optimizer_steps"] / race["steps_per_run"])
    # The same race through the library: the command's trainer (standardising inside each
    # fold), its folds and the trainer's default bounds.
    X, y = read_table(table)
    trainer = l2optim.FoldTrainer(
        functools.partial(torch.nn.Linear, 3, 1),
        torch.as_tensor(X, dtype=torch.float32),
        torch.as_tensor(y, dtype=torch.float32),
        optimizer=l2optim.SGD,
        optimizer_kwargs={"momentum": 0.9, "lr": 0.01},
        epochs=8,
        batch_size=64,
        standardize=True,
    )
    expected = l2optim.select_lambda_fast(trainer, budget=6, random_state=0)
    assert report["lambda_min"] == pytest.approx(expected.lambda_min)
    # The λ the command hands on is the race's choice, not its best-scored point.
    assert report["lambda"] == pytest.approx(expected.lambda_chosen)
    assert race["lambda_chosen"] == pytest.approx(expected.lambda_chosen)
    assert report["bounds"] == pytest.approx(list(expected.bounds))
    means = [row["mean"] for row in report["evaluations"]]
    np.testing.assert_allclose(means, expected.cv_mean, rtol=1e-6)
    assert race["epochs"] == expected.final.epochs
    assert report["folds"] == 2 and race["train_scale"] == pytest.approx(expected.train_scale)
    assert expected.train_scale > 1  # two folds' runs trained at λ scaled to 5-fold CV's rows
    assert race["reference_folds"] == 5
    # The table says what ran and prints one cost line, in training runs.
    assert main(["select-lambda", str(table), *args]) == 0
    out = capsys.readouterr().out
    assert "raced (l2optim.select_lambda_fast)" in out
    cost = [line for line in out.splitlines() if line.startswith("cost: ")]
    assert len(cost) == 1 and "training-run equivalents" in cost[0]
    assert float(cost[0].split()[1]) == pytest.approx(race["run_equivalents"], abs=0.005)
    assert f"trained at {race['train_scale']:.4g} λ, so that λ is on 5-fold CV's scale" in out
    chosen = out.splitlines()[-1]
    assert chosen.startswith("chosen lambda (min: the race's lambda_chosen): ")
    assert float(chosen.rsplit(" ", 1)[1]) == pytest.approx(expected.lambda_chosen, rel=1e-5)


# -- classification, columns left out, and what the table shows ---------------------------


@pytest.fixture(scope="module")
def labels_table(tmp_path_factory) -> Path:
    """60 rows of three classes (0, 1, 2) from two features, written as pandas writes a
    DataFrame: an unnamed index column first; then a row identifier."""
    rng = np.random.default_rng(1)
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    label = np.repeat([0, 1, 2], 20)
    x = centres[label] + rng.normal(size=(60, 2))
    path = tmp_path_factory.mktemp("cli") / "labels.csv"
    rows = [",id,x1,x2,label"] + [
        f"{i},{100 + i},{a:.6f},{b:.6f},{c}" for i, ((a, b), c) in enumerate(zip(x, label, strict=True))
    ]
    path.write_text("\n".join(rows) + "\n")
    return path


CLASSIFY = ["--target", "label", "--drop", "id", "--epochs", "5", "--folds", "3",
            "--bounds", "1e-3", "1", "--n-grid", "3", "--xtol", "1"]


def test_an_integer_target_is_classified_by_log_loss_with_the_librarys_numbers(
    labels_table, capsys
):
    assert main(["select-lambda", str(labels_table), *CLASSIFY, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "classification" and report["classes"] == [0, 1, 2]
    assert report["dropped"] == ["", "id"] and report["n_features"] == 2
    assert "log loss" in report["score"]
    # The same search through the library: cross-entropy on class indices, X standardised.
    table = l2optim.data.read_csv(labels_table, drop=["id"])
    X, y, _ = table.split("label")
    trainer = l2optim.FoldTrainer(
        functools.partial(torch.nn.Linear, 2, 3),
        torch.as_tensor(X, dtype=torch.float32),
        torch.as_tensor(y, dtype=torch.long),
        loss=torch.nn.functional.cross_entropy,
        optimizer=l2optim.SGD,
        optimizer_kwargs={"momentum": 0.9, "lr": 0.01},
        epochs=5,
        batch_size=64,
        standardize=True,
    )
    objective = l2optim.kfold_objective(trainer, 60, folds=3)
    for row in report["evaluations"]:
        assert row["scores"] == pytest.approx(list(objective(row["lambda"])), rel=1e-6)
    # The accuracy at the chosen λ, on the same folds: 1 − the mean error rate.
    predictions = []
    for train, test in objective.splits:
        model = l2optim.FoldTrainer(
            trainer.model_factory, trainer.X[train], trainer.y[train], loss=trainer.loss,
            optimizer=l2optim.SGD, optimizer_kwargs=trainer.optimizer_kwargs, epochs=5,
            batch_size=64, standardize=True,
        ).fit(report["lambda"])
        with torch.no_grad():
            predictions.append(float((model(trainer.X[test]).argmax(1) == trainer.y[test]).double().mean()))
    assert report["accuracy"] == pytest.approx(np.mean(predictions))
    assert report["accuracy_folds"] == 3


def test_the_classification_table_says_what_it_did(labels_table, capsys):
    assert main(["select-lambda", str(labels_table), "--target", "label", "--epochs", "3",
                 "--folds", "3", "--n-grid", "3", "--xtol", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "target 'label' as 3 classes (0, 1, 2; detected from its integer values" in lines[0]
    assert "logistic regression trained with sgd" in lines[0]
    # The pandas index is left out with a note; the identifier is kept but pointed at.
    assert lines[1].startswith("note: left out the unnamed first column")
    assert lines[2] == "note: column 'id' counts the rows (an identifier?); --drop id leaves it out"
    assert lines[3].split() == ["lambda", "log", "loss", "se"]
    assert any(line.startswith("accuracy at the chosen lambda: ") for line in lines)


def test_task_regression_fits_integer_labels_as_numbers(labels_table, capsys):
    args = ["select-lambda", str(labels_table), "--target", "label", "--drop", "id",
            "--task", "regression", "--folds", "3", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["task"] == "regression" and report["method"] == "ridge_cv"
    assert report["classes"] is None and "accuracy" not in report


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--drop", "nope"], "no column 'nope' to drop; the columns are: , id, x1, x2, label"),
        (["--drop", "label"], "--drop label leaves out the --target column"),
        (["--drop", "x1", "x2", "id"], "needs a target and at least one feature column"),
    ],
)
def test_bad_drops_are_named(labels_table, capsys, args, message):
    with pytest.raises(SystemExit) as stopped:
        main(["select-lambda", str(labels_table), "--target", "label", *args])
    captured = capsys.readouterr()
    assert_one_line_usage_error(stopped.value.code, captured.out, captured.err, message)


def test_a_single_class_is_refused(tmp_path, capsys):
    path = tmp_path / "one.csv"
    path.write_text("x,y\n1,1\n2,1\n3,1\n")
    with pytest.raises(SystemExit):
        main(["select-lambda", str(path), "--target", "y", "--task", "classification"])
    assert "classification needs at least two classes" in capsys.readouterr().err


def test_the_demo_table_shows_the_grid_and_each_choice_once_with_the_gain(capsys):
    assert main(["select-lambda", "--demo"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line for line in lines if line[:14].strip().replace(".", "").replace("e-", "")
            .replace("e+", "").isdigit()]
    lambdas = [float(line.split()[0]) for line in rows]
    assert lambdas == sorted(lambdas) and len(set(lambdas)) == len(lambdas)
    gaps = np.diff(np.log10(lambdas))
    assert gaps.min() >= 0.15  # no near-duplicates from the refinement
    assert sum("<- lambda_min" in line for line in rows) == 1
    assert sum("<- lambda_1se" in line for line in rows) == 1
    X, y, _ = l2optim.data.load_diabetes()
    oracle = l2optim.ridge_cv(X, y, cv=l2optim.kfold_splits(442, 5), standardize=True)
    gain = 1 - oracle.cv_mean[oracle.lambdas == oracle.lambda_min][0] / oracle.cv_mean[0]
    assert f"at lambda_min the mean is {100 * gain:.3g}% below" in "\n".join(lines)


def test_help_explains_the_races_stops(capsys):
    with pytest.raises(SystemExit):
        main(["select-lambda", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for stop in ("settled", "budget", "bound", "repeat", "diverged"):
        assert f"{stop}: " in text
    assert "--drop COL" in text and "--task {auto,regression,classification}" in text
