"""The ``l2optim`` command line: choose the weight decay λ of a model for a CSV file.

``l2optim select-lambda DATA.csv --target COL`` reads a table of numbers, standardises
every column, and runs :func:`l2optim.select_lambda` on the k-fold validation loss of a
linear model ("ridge") or a small MLP trained with an l2optim optimizer
(:class:`l2optim.FoldTrainer` on :func:`l2optim.kfold_objective`). ``--demo`` uses the
diabetes data shipped in :mod:`l2optim.data`.

Bad input ends the command with exit status 2 and one line on stderr,
``l2optim: error: ...``, before any training starts.
"""

from __future__ import annotations

import argparse
import csv
import functools
import inspect
import json
import math
import multiprocessing
import os
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from torch import nn

import l2optim

__all__ = ["main"]

PROG = "l2optim"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: optimizer name → (class, fixed arguments).
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "sgd": (l2optim.SGD, {"momentum": 0.9}),
    "adam": (l2optim.Adam, {}),
    "rmsprop": (l2optim.RMSprop, {}),
}
MLP_HIDDEN = 32
#: select_lambda_fast's own default budget, in training runs.
_FAST_BUDGET = inspect.signature(l2optim.select_lambda_fast).parameters["budget"].default


class UsageError(Exception):
    """Bad input from the user: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (no usage block) under the program's name."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see '{self.prog} --help')")


def _fail(message: str, status: int = EXIT_USAGE) -> NoReturn:
    one_line = " ".join(message.split())  # a cause's message may span lines
    print(f"{PROG}: error: {one_line}", file=sys.stderr)
    raise SystemExit(status)


# --------------------------------------------------------------------------- arguments


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG, description="Weight decay for PyTorch: choose λ by cross-validation."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {l2optim.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    select = commands.add_parser(
        "select-lambda",
        help="choose λ for a model of a CSV file by k-fold cross-validation",
        description=(
            "Choose the weight decay λ of a model of one column of a CSV file from the others, "
            "by k-fold cross-validation: a log grid over --bounds, then Brent's method on log λ. "
            "The file has a header row and numbers only. Every column, features and target, is "
            "standardised (mean 0, standard deviation 1, over the whole file), so the scores are "
            "validation mean squared errors of the standardised target: 1 is no better than "
            "predicting the mean. λ decays weights, not biases, and means what it means in "
            "l2optim.ridge_cv: the training loss is half the mean squared error, so --model "
            "ridge with coupled decay minimises (1/2n)||Xw + b - y||^2 + (λ/2)||w||^2. One torch "
            "thread per process; use --workers to train folds in parallel."
        ),
    )
    data = select.add_argument_group("data")
    data.add_argument("data", nargs="?", metavar="DATA.csv", help="comma-separated table")
    data.add_argument("--target", metavar="COL", help="the column to predict")
    data.add_argument(
        "--demo",
        action="store_true",
        help="use the diabetes data shipped with l2optim (442 patients; "
        "target 'progression' unless --target names another column)",
    )
    model = select.add_argument_group("model and training")
    model.add_argument(
        "--model",
        choices=["ridge", "mlp"],
        default="ridge",
        help=f"ridge: a linear model; mlp: one hidden layer of {MLP_HIDDEN} tanh units "
        "(default: %(default)s)",
    )
    model.add_argument(
        "--optimizer",
        choices=sorted(OPTIMIZERS),
        default="sgd",
        help="l2optim.SGD (momentum 0.9), Adam or RMSprop (default: %(default)s)",
    )
    model.add_argument(
        "--decoupled",
        action="store_true",
        help="decoupled weight decay (SGDW, AdamW, RMSpropW) instead of coupled L2",
    )
    model.add_argument(
        "--lr",
        type=float,
        default=0.01,
        help="learning rate (default: %(default)s)",
    )
    model.add_argument(
        "--epochs",
        type=int,
        default=30,
        help="passes over the training folds (default: %(default)s)",
    )
    model.add_argument(
        "--batch-size", type=int, default=64, help="samples per step (default: %(default)s)"
    )
    model.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the folds, initial weights and batch order (default: %(default)s)",
    )
    search = select.add_argument_group("search")
    search.add_argument(
        "--folds",
        type=int,
        default=5,
        metavar="K",
        help="k of k-fold cross-validation (default: %(default)s)",
    )
    search.add_argument(
        "--bounds",
        type=float,
        nargs=2,
        default=(1e-5, 1.0),
        metavar=("LO", "HI"),
        help="search λ in [LO, HI], 0 < LO < HI (default: 1e-5 1)",
    )
    search.add_argument(
        "--rule",
        choices=["min", "1se"],
        default="min",
        help="min: λ of the lowest mean score; 1se: the largest λ within one "
        "standard error of it (default: %(default)s)",
    )
    search.add_argument(
        "--fast",
        action="store_true",
        help="race λ (l2optim.select_lambda_fast) instead of cross-validating every λ to "
        "the end: successive halving on epochs over every fold, within --budget training runs",
    )
    search.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="RUNS",
        help=f"with --fast: the most training-run equivalents to spend (default: {_FAST_BUDGET:g})",
    )
    search.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="train folds in N processes (default: %(default)s)",
    )
    output = select.add_argument_group("output")
    output.add_argument(
        "--log", metavar="FILE", help="append each evaluation to FILE (JSON lines); rerun to resume"
    )
    output.add_argument("--plot", metavar="FILE.png", help="save the CV curve (needs matplotlib)")
    output.add_argument(
        "--json", action="store_true", help="print one JSON object instead of the table"
    )
    select.set_defaults(run=_select_lambda)
    return parser


def _check_options(args: argparse.Namespace) -> None:
    """Every option in its range, before any work starts."""
    if args.demo == (args.data is not None):
        raise UsageError("give either DATA.csv with --target COL, or --demo")
    if args.data is not None and args.target is None:
        raise UsageError("--target COL is required with DATA.csv")
    lo, hi = args.bounds
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise UsageError(f"--bounds LO HI must satisfy 0 < LO < HI, got {lo:g} {hi:g}")
    if args.folds < 2:
        raise UsageError(f"--folds must be at least 2, got {args.folds}")
    for option, value in (
        ("--workers", args.workers),
        ("--epochs", args.epochs),
        ("--batch-size", args.batch_size),
    ):
        if value < 1:
            raise UsageError(f"{option} must be at least 1, got {value}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise UsageError(f"--lr must be a positive number, got {args.lr:g}")
    _check_fast_options(args)
    for option, path in (("--log", args.log), ("--plot", args.plot)):
        if path is not None and not Path(path).parent.is_dir():
            raise UsageError(
                f"{option} {path}: directory {str(Path(path).parent)!r} does not exist"
            )


def _check_fast_options(args: argparse.Namespace) -> None:
    """--budget only with --fast; --log and --workers only without (the race runs its
    folds stacked in this process and keeps no log)."""
    if not args.fast:
        if args.budget is not None:
            raise UsageError("--budget needs --fast")
        return
    if args.budget is not None and not (math.isfinite(args.budget) and args.budget > 0):
        raise UsageError(f"--budget must be a positive number, got {args.budget:g}")
    if args.log is not None:
        raise UsageError("--log does not apply to --fast (the race keeps no log)")
    if args.workers != 1:
        raise UsageError("--workers does not apply to --fast (its runs train as one stack)")


# --------------------------------------------------------------------------- the data


def _read_table(path: Path) -> tuple[list[str], np.ndarray]:
    """Header and float64 values of a CSV file of numbers; UsageError naming what is wrong."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            rows = [(line, row) for line, row in _numbered_rows(csv.reader(file)) if row]
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not a UTF-8 text file") from None
    except (OSError, csv.Error) as exc:
        raise UsageError(f"{path}: cannot read it: {exc}") from None
    if not rows:
        raise UsageError(f"{path}: the file is empty")
    (_, header), body = rows[0], rows[1:]
    header = [name.strip() for name in header]
    _check_header(path, header)
    if not body:
        raise UsageError(f"{path}: a header row but no data rows")
    values = np.empty((len(body), len(header)))
    for row_number, (line, row) in enumerate(body, start=1):
        if len(row) != len(header):
            raise UsageError(
                f"{path}: row {row_number} (line {line}) has {len(row)} fields, "
                f"the header has {len(header)}"
            )
        for column, (name, text) in enumerate(zip(header, row, strict=True)):
            values[row_number - 1, column] = _number(path, name, row_number, line, text)
    return header, values


def _numbered_rows(reader: Any) -> Iterator[tuple[int, list[str]]]:
    """(line number where the row ends, row) for each row of a ``csv.reader``."""
    for row in reader:
        yield reader.line_num, row


def _check_header(path: Path, header: list[str]) -> None:
    if len(header) < 2:
        raise UsageError(f"{path}: needs a target and at least one feature column, got {header}")
    seen: set[str] = set()
    for name in header:
        if not name:
            raise UsageError(f"{path}: the header has an empty column name")
        if name in seen:
            raise UsageError(f"{path}: column {name!r} appears twice in the header")
        seen.add(name)


def _number(path: Path, column: str, row_number: int, line: int, text: str) -> float:
    where = f"{path}: column {column!r}, row {row_number} (line {line})"
    try:
        value = float(text)
    except ValueError:
        if not text.strip():
            raise UsageError(f"{where} is empty; missing values are not supported") from None
        raise UsageError(f"{where}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"{where}: {text.strip()!r} is not a finite number")
    return value


def _split_target(
    header: list[str], values: np.ndarray, target: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    if target not in header:
        raise UsageError(
            f"unknown column {target!r} for --target; the columns are: {', '.join(header)}"
        )
    index = header.index(target)
    features = [i for i in range(len(header)) if i != index]
    return values[:, features], values[:, index], [header[i] for i in features]


def _standardise(values: np.ndarray) -> np.ndarray:
    """(v − mean)/sd per column; a constant column becomes 0."""
    sd = values.std(axis=0)
    return (values - values.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _load(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, list[str], str, str]:
    """X, y, feature names, target name and a name for the data, as the options say."""
    if args.demo:
        path = l2optim.data.diabetes_csv()
        target = args.target or l2optim.data.DIABETES_TARGET
    else:
        path, target = Path(args.data), args.target
    header, values = _read_table(path)
    X, y, features = _split_target(header, values, target)
    if args.folds > len(y):
        raise UsageError(
            f"--folds must be between 2 and the number of rows ({len(y)}), got {args.folds}"
        )
    return X, y, features, target, path.name


# --------------------------------------------------------------------------- the search


def _mlp(n_features: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, 1))


def _trainer(args: argparse.Namespace, X: np.ndarray, y: np.ndarray) -> l2optim.FoldTrainer:
    optimizer, fixed = OPTIMIZERS[args.optimizer]
    n_features = X.shape[1]
    if args.model == "ridge":
        factory = functools.partial(nn.Linear, n_features, 1)
    else:
        factory = functools.partial(_mlp, n_features, MLP_HIDDEN)
    return l2optim.FoldTrainer(
        factory,
        torch.as_tensor(_standardise(X), dtype=torch.float32),
        torch.as_tensor(_standardise(y[:, None])[:, 0], dtype=torch.float32),
        optimizer=optimizer,
        optimizer_kwargs={**fixed, "lr": args.lr},
        decoupled_weight_decay=args.decoupled,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
    )


def _worker_pool(workers: int) -> Executor | None:
    if workers == 1:
        return None
    # spawn: a fresh interpreter per worker, safe whatever threads this process runs.
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=torch.set_num_threads,
        initargs=(1,),
    )


def _search(
    args: argparse.Namespace, trainer: l2optim.FoldTrainer, n_samples: int
) -> l2optim.LambdaSearch:
    pool = _worker_pool(args.workers)
    with pool if pool is not None else nullcontext():
        objective = l2optim.kfold_objective(
            trainer, n_samples, folds=args.folds, random_state=args.seed, executor=pool
        )
        try:
            return l2optim.select_lambda(
                objective,
                bounds=tuple(args.bounds),
                log=args.log,
                progress=not args.json and sys.stderr.isatty(),
            )
        except l2optim.ObjectiveError as exc:
            cause = exc.__cause__
            raise UsageError(
                f"training failed at lambda={exc.lam:.6g}: {type(cause).__name__}: {cause}"
            ) from None
        except ValueError as exc:  # every λ of the grid diverged
            raise UsageError(f"{exc}; try a smaller --lr") from None


def _race(args: argparse.Namespace, trainer: l2optim.FoldTrainer) -> l2optim.LambdaRace:
    budget = _FAST_BUDGET if args.budget is None else args.budget
    try:
        return l2optim.select_lambda_fast(
            trainer, tuple(args.bounds), budget=budget, folds=args.folds, random_state=args.seed
        )
    except ValueError as exc:  # a budget too small, or every λ diverged
        raise UsageError(f"{exc}") from None


# --------------------------------------------------------------------------- the report


def _chosen(search: l2optim.LambdaSearch | l2optim.LambdaRace, rule: str) -> float:
    if rule == "1se" and search.lambda_1se is not None:
        return search.lambda_1se
    return search.lambda_min


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _report(
    args: argparse.Namespace,
    search: l2optim.LambdaSearch | l2optim.LambdaRace,
    setting: dict[str, Any],
) -> dict[str, Any]:
    """Everything the command found, as plain JSON-ready values (non-finite → null)."""
    report = {
        **setting,
        "rule": args.rule,
        "lambda": _chosen(search, args.rule),
        "lambda_min": search.lambda_min,
        "lambda_1se": search.lambda_1se,
        "bounds": list(search.bounds),
        "loss": "half the MSE of the standardised target on the training folds",
        "score": "validation MSE of the standardised target",
        "evaluations": [
            {
                "lambda": e.lam,
                "mean": _finite_or_none(e.mean),
                "se": _finite_or_none(e.se),
                "scores": [_finite_or_none(s) for s in e.scores],
                "seconds": _finite_or_none(e.seconds),
            }
            for e in sorted(search.evaluations, key=lambda e: e.lam)
        ],
    }
    if isinstance(search, l2optim.LambdaRace):
        report["race"] = {
            "rungs": [
                {"epochs": rung.epochs, "lambdas": rung.lambdas.tolist()} for rung in search.rungs
            ],
            "epochs": search.final.epochs,
            "stop": search.stop,
            "run_equivalents": search.run_equivalents,
            "optimizer_steps": search.optimizer_steps,
            "steps_per_run": search.steps_per_run,
            "seconds": search.seconds,
        }
    return report


def _print_table(report: dict[str, Any]) -> None:
    print(
        f"{report['data']}: {report['n_samples']} rows, {report['n_features']} features, "
        f"target {report['target']!r}; {report['model']} trained with {report['optimizer']}"
        f" ({'decoupled' if report['decoupled'] else 'coupled'} weight decay), "
        f"{report['folds']}-fold CV"
    )
    print(f"{'lambda':>12}  {'mean MSE':>10}  {'se':>10}")
    marks = {report["lambda_min"]: "  <- min", report["lambda_1se"]: "  <- 1se"}
    for row in report["evaluations"]:
        mean = "diverged" if row["mean"] is None else f"{row['mean']:.5f}"
        se = "" if row["se"] is None else f"{row['se']:.5f}"
        print(f"{row['lambda']:12.4e}  {mean:>10}  {se:>10}{marks.get(row['lambda'], '')}")
    print("scores: validation MSE of the standardised target (1 = predicting the mean)")
    race = report.get("race")
    if race is not None:
        rungs = ", ".join(f"{len(r['lambdas'])} λ × {r['epochs']}" for r in race["rungs"])
        print(
            f"race: rungs of {rungs} epochs; the scores above are after {race['epochs']} "
            f"epochs (stop: {race['stop']})"
        )
        print(
            f"cost: {race['run_equivalents']:.2f} training-run equivalents "
            f"({race['optimizer_steps']} optimizer steps, {race['steps_per_run']} per run), "
            f"{race['seconds']:.1f} s"
        )
    print(f"chosen lambda ({report['rule']}): {report['lambda']:.6g}")


def _save_plot(search: l2optim.LambdaSearch | l2optim.LambdaRace, path: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'l2optim[plot]'") from None
    ax = search.plot()
    ax.set_ylabel("validation MSE (standardised target)")
    ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(ax.figure)


def _select_lambda(args: argparse.Namespace) -> int:
    _check_options(args)
    X, y, features, target, name = _load(args)
    torch.set_num_threads(1)  # small models: parallelism comes from --workers
    trainer = _trainer(args, X, y)
    search = _race(args, trainer) if args.fast else _search(args, trainer, len(y))
    setting = {
        "data": name,
        "target": target,
        "n_samples": int(X.shape[0]),
        "n_features": len(features),
        "model": args.model,
        "optimizer": args.optimizer,
        "decoupled": args.decoupled,
        "folds": args.folds,
    }
    report = _report(args, search, setting)
    if args.plot is not None:
        _save_plot(search, args.plot)
    if args.json:
        print(json.dumps(report))
    else:
        _print_table(report)
    return 0


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``l2optim`` command with ``argv`` (default: ``sys.argv[1:]``); the exit status."""
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return args.run(args)
    except UsageError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        resume = f"; rerun with --log {args.log} to resume" if args.log else ""
        _fail(f"interrupted{resume}", EXIT_INTERRUPTED)
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
