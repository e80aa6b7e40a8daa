"""The ``l2optim`` command line: choose the weight decay λ of a model for a CSV file.

``l2optim select-lambda DATA.csv --target COL`` reads a table of numbers with
:func:`l2optim.data.read_csv` and chooses λ by k-fold cross-validation on the folds of
:func:`l2optim.kfold_splits`, standardising inside each training fold:

* ``--model ridge`` (the default): the exact CV curve of ridge regression,
  :func:`l2optim.ridge_cv`;
* ``--model mlp``, or ``--trained``: :func:`l2optim.select_lambda` on
  :class:`l2optim.FoldTrainer` models trained with an l2optim optimizer;
* ``--fast``: the same trained models, λ raced by :func:`l2optim.select_lambda_fast`
  within ``--budget`` training runs, its cost printed.

``--demo`` uses the diabetes data shipped in :mod:`l2optim.data`. The command only
declares its options and calls the public API: bad input, found by the library, ends it
with exit status 2 and one line on stderr, ``l2optim: error: ...``, before any training.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import math
import os
import sys
import warnings
from collections.abc import Sequence
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
#: The options of the trained search and their defaults (None: the library's).
TRAINING_DEFAULTS: dict[str, Any] = {
    "optimizer": "sgd",
    "decoupled": False,
    "lr": 0.01,
    "epochs": 30,
    "batch_size": 64,
    "workers": 1,
    "log": None,
    "n_grid": 7,
    "xtol": 0.01,
}
#: Options of the full trained search that the race has no use for.
NOT_RACED = ("workers", "log", "n_grid", "xtol")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (no usage block) under the program's name."""

    def error(self, message: str) -> NoReturn:
        _fail(f"{message} (see '{self.prog} --help')")


def _fail(message: str, status: int = EXIT_USAGE) -> NoReturn:
    one_line = " ".join(message.split())  # a cause's message may span lines
    print(f"{PROG}: error: {one_line}", file=sys.stderr)
    raise SystemExit(status)


def _output_file(text: str) -> str:
    """An output path whose directory exists (checked before any work starts)."""
    parent = Path(text).parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: directory {str(parent)!r} does not exist")
    return text


# --------------------------------------------------------------------------- arguments


def _library_default(function: Any, name: str) -> Any:
    return inspect.signature(function).parameters[name].default


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
            "by k-fold cross-validation. The file has a header row and numbers only. Inside "
            "each fold the features are standardised on the training rows (mean 0, standard "
            "deviation 1), as a scikit-learn Pipeline would; scores are validation mean "
            "squared errors in the target's units. --model ridge is answered exactly, by "
            "l2optim.ridge_cv on the same folds: λ minimises (1/2n)||Xw + b - y||^2 + "
            "(λ/2)||w||^2 on each training fold. --trained (and --model mlp) trains the model "
            "with an l2optim optimizer instead (target standardised too), searching a log grid "
            "and then Brent's method on log λ; λ decays weights, not biases. One torch thread "
            "per process; --workers trains folds in parallel."
        ),
    )
    data = select.add_argument_group("data")
    data.add_argument("data", nargs="?", metavar="DATA.csv", help="a table of numbers")
    data.add_argument("--target", metavar="COL", help="the column to predict")
    data.add_argument(
        "--sep",
        metavar="CHAR",
        help="the field separator (default: the one of , ; tab | that fits the file)",
    )
    data.add_argument(
        "--demo",
        action="store_true",
        help="use the diabetes data shipped with l2optim (442 patients; "
        "target 'progression' unless --target names another column)",
    )
    model = select.add_argument_group("model")
    model.add_argument(
        "--model",
        choices=["ridge", "mlp"],
        default="ridge",
        help=f"ridge: a linear model; mlp: one hidden layer of {MLP_HIDDEN} tanh units "
        "(default: %(default)s)",
    )
    model.add_argument(
        "--trained",
        action="store_true",
        help="train --model ridge with an optimizer rather than solve it in closed form",
    )
    train = select.add_argument_group(
        "training (with --trained or --model mlp)",
        "defaults: " + ", ".join(
            f"--{name.replace('_', '-')} {value}"
            for name, value in TRAINING_DEFAULTS.items()
            if value not in (None, False)
        ),
    )
    train.add_argument(
        "--optimizer",
        choices=sorted(OPTIMIZERS),
        help="l2optim.SGD (momentum 0.9), Adam or RMSprop",
    )
    train.add_argument(
        "--decoupled",
        action="store_true",
        default=None,
        help="decoupled weight decay (SGDW, AdamW, RMSpropW) instead of coupled L2",
    )
    train.add_argument("--lr", type=float, help="learning rate")
    train.add_argument("--epochs", type=int, help="passes over the training folds")
    train.add_argument("--batch-size", type=int, help="samples per step")
    train.add_argument("--workers", type=int, metavar="N", help="train folds in N processes")
    train.add_argument(
        "--n-grid", type=int, metavar="N", help="points on the coarse log grid of λ"
    )
    train.add_argument(
        "--xtol", type=float, help="Brent's tolerance on ln λ (0.01: λ to about 1%%)"
    )
    train.add_argument(
        "--log",
        metavar="FILE",
        type=_output_file,
        help="append each evaluation to FILE (JSON lines); rerun to resume",
    )
    race = select.add_argument_group("fast search")
    race.add_argument(
        "--fast",
        action="store_true",
        help="race λ (l2optim.select_lambda_fast) rather than train every fold to the end for "
        "each λ: successive halving on epochs over every fold, within --budget training runs; "
        "the training options above apply, and --model ridge is trained too",
    )
    race.add_argument(
        "--budget",
        type=float,
        metavar="RUNS",
        help="with --fast: the most training-run equivalents to spend (optimizer steps over "
        "those of one training on every row; default: the library's, "
        f"{_library_default(l2optim.select_lambda_fast, 'budget'):g})",
    )
    search = select.add_argument_group("search")
    search.add_argument(
        "--folds",
        type=int,
        metavar="K",
        help="k of k-fold cross-validation (default: 5; with --fast, the race's "
        f"{_library_default(l2optim.select_lambda_fast, 'folds')} folds, its λ scaled to "
        f"{_library_default(l2optim.select_lambda_fast, 'reference_folds')}-fold CV's "
        "training rows)",
    )
    search.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the folds, initial weights and batch order (default: %(default)s)",
    )
    search.add_argument(
        "--bounds",
        type=float,
        nargs=2,
        metavar=("LO", "HI"),
        help="search λ in [LO, HI] (default: closed form, [1e-6 L, 1e3 L] for L the largest "
        "eigenvalue of XᵀX/n; trained, from the optimizer: λ < 0.5/lr when decoupled, "
        "else [1e-5 L, 10 L])",
    )
    search.add_argument(
        "--rule",
        choices=["min", "1se"],
        default="min",
        help="min: λ of the lowest mean score (with --fast, the race's choice near it: "
        "lambda_chosen); 1se: the largest λ within one standard error of it "
        "(default: %(default)s)",
    )
    output = select.add_argument_group("output")
    output.add_argument(
        "--plot", metavar="FILE.png", type=_output_file, help="save the CV curve (needs matplotlib)"
    )
    output.add_argument(
        "--json", action="store_true", help="print one JSON object instead of the table"
    )
    select.set_defaults(run=_select_lambda)
    return parser


def _settle_options(args: argparse.Namespace) -> None:
    """What the options mean together; the values themselves are the library's to check."""
    if args.demo == (args.data is not None):
        raise ValueError("give either DATA.csv with --target COL, or --demo")
    if args.data is not None and args.target is None:
        raise ValueError("--target COL is required with DATA.csv")
    args.trained = args.trained or args.model == "mlp" or args.fast
    if args.folds is None:
        args.folds = _library_default(l2optim.select_lambda_fast, "folds") if args.fast else 5
    if args.budget is not None and not args.fast:
        raise ValueError("--budget applies to --fast only")
    for name in NOT_RACED if args.fast else ():
        if getattr(args, name) is not None:
            raise ValueError(
                f"--{name.replace('_', '-')} does not apply to --fast (its runs train as one "
                "stack in this process and keep no log)"
            )
    for name, default in TRAINING_DEFAULTS.items():
        given = getattr(args, name)
        if given is not None and not args.trained:
            option = f"--{name.replace('_', '-')}"
            raise ValueError(
                f"{option} applies to the trained search only: add --trained "
                "(--model ridge is otherwise solved in closed form, with no training)"
            )
        if given is None:
            setattr(args, name, default)


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
        torch.as_tensor(X, dtype=torch.float32),
        torch.as_tensor(y, dtype=torch.float32),
        optimizer=optimizer,
        optimizer_kwargs={**fixed, "lr": args.lr},
        decoupled_weight_decay=args.decoupled,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        standardize=True,
    )


def _trained_search(
    args: argparse.Namespace, X: np.ndarray, y: np.ndarray
) -> l2optim.LambdaSearch:
    objective = l2optim.kfold_objective(
        _trainer(args, X, y),
        len(y),
        folds=args.folds,
        random_state=args.seed,
        workers=None if args.workers == 1 else args.workers,
    )
    with objective:
        return l2optim.select_lambda(
            objective,
            bounds=args.bounds,
            n_grid=args.n_grid,
            xtol=args.xtol,
            log=args.log,
            progress=not args.json and sys.stderr.isatty(),
        )


def _race(args: argparse.Namespace, X: np.ndarray, y: np.ndarray) -> l2optim.LambdaRace:
    budget = _library_default(l2optim.select_lambda_fast, "budget")
    return l2optim.select_lambda_fast(
        _trainer(args, X, y),
        args.bounds,
        budget=budget if args.budget is None else args.budget,
        folds=args.folds,
        random_state=args.seed,
    )


def _closed_form(args: argparse.Namespace, X: np.ndarray, y: np.ndarray) -> l2optim.CVCurve:
    splits = l2optim.kfold_splits(len(y), args.folds, random_state=args.seed)
    return l2optim.ridge_cv(X, y, cv=splits, standardize=True, bounds=args.bounds)


# --------------------------------------------------------------------------- the report


def _finite_or_none(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _report(args: argparse.Namespace, curve: l2optim.CVCurve, setting: dict[str, Any]) -> dict:
    """Everything the command found, as plain JSON-ready values (non-finite → null)."""
    if args.rule == "1se" and curve.lambda_1se:
        chosen = curve.lambda_1se
    elif isinstance(curve, l2optim.LambdaRace):
        chosen = curve.lambda_chosen
    else:
        chosen = curve.lambda_min
    evaluations = {e.lam: e for e in getattr(curve, "evaluations", ())}
    rows = []
    for lam, mean, se in zip(curve.lambdas.tolist(), curve.cv_mean, curve.cv_se, strict=True):
        row: dict[str, Any] = {"lambda": lam, "mean": _finite_or_none(mean),
                               "se": _finite_or_none(se)}
        if lam in evaluations:
            row["scores"] = [_finite_or_none(s) for s in evaluations[lam].scores]
            row["seconds"] = _finite_or_none(evaluations[lam].seconds)
        rows.append(row)
    report = {
        **setting,
        "rule": args.rule,
        "lambda": chosen,
        "lambda_min": curve.lambda_min,
        "lambda_1se": curve.lambda_1se,
        "at_edge": curve.at_edge,
        "bounds": list(curve.bounds),
        "score": f"validation MSE of {setting['target']!r}, in its units",
        "evaluations": rows,
    }
    if isinstance(curve, l2optim.LambdaRace):
        report["race"] = {
            "rungs": [{"epochs": r.epochs, "lambdas": r.lambdas.tolist()} for r in curve.rungs],
            "epochs": curve.final.epochs,
            "stop": curve.stop,
            "run_equivalents": curve.run_equivalents,
            "optimizer_steps": curve.optimizer_steps,
            "steps_per_run": curve.steps_per_run,
            "seconds": curve.seconds,
            "train_scale": curve.train_scale,
            "reference_folds": _library_default(l2optim.select_lambda_fast, "reference_folds"),
            "lambda_chosen": curve.lambda_chosen,
        }
    return report


def _print_table(report: dict[str, Any]) -> None:
    where = (
        f"{report['data']}: {report['n_samples']} rows, {report['n_features']} features, "
        f"target {report['target']!r}; "
    )
    if report["method"] == "ridge_cv":
        how = (
            f"ridge by the closed form (l2optim.ridge_cv), {report['folds']}-fold CV, "
            "features standardised within each training fold"
        )
    else:
        form = "decoupled" if report["decoupled"] else "coupled"
        how = (
            ("λ raced (l2optim.select_lambda_fast), " if report["method"] == "race" else "")
            + f"{report['model']} trained with {report['optimizer']} ({form} weight decay), "
            f"{report['folds']}-fold CV, features and target standardised within each "
            "training fold"
        )
    print(where + how)
    print(f"{'lambda':>12}  {'mean MSE':>12}  {'se':>12}")
    marks = {report["lambda_min"]: "  <- min", report["lambda_1se"]: "  <- 1se"}
    for row in report["evaluations"]:
        mean = "diverged" if row["mean"] is None else f"{row['mean']:.6g}"
        se = "" if row["se"] is None else f"{row['se']:.4g}"
        print(f"{row['lambda']:12.4e}  {mean:>12}  {se:>12}{marks.get(row['lambda'], '')}")
    print(
        f"scores: validation MSE of {report['target']!r} in its units (predicting the mean "
        f"scores about its variance, {report['target_variance']:.6g})"
    )
    if report["at_edge"] is not None:
        side = "below" if report["at_edge"] == "lower" else "above"
        lo, hi = report["evaluations"][0]["lambda"], report["evaluations"][-1]["lambda"]
        print(
            f"note: lambda_min is at the {report['at_edge']} end of the searched range "
            f"[{lo:.4g}, {hi:.4g}]; the best lambda may lie {side} it: widen --bounds"
        )
    race = report.get("race")
    if race is not None:
        rungs = ", ".join(f"{len(r['lambdas'])} λ × {r['epochs']}" for r in race["rungs"])
        print(
            f"race: rungs of {rungs} epochs; the scores above are after {race['epochs']} "
            f"epochs (stop: {race['stop']}); each run trained at {race['train_scale']:.4g} λ, "
            f"so that λ is on {race['reference_folds']}-fold CV's scale"
        )
        print(
            f"cost: {race['run_equivalents']:.2f} training-run equivalents "
            f"({race['optimizer_steps']} optimizer steps, {race['steps_per_run']} per run), "
            f"{race['seconds']:.1f} s"
        )
    how = report["rule"]
    if race is not None and how == "min":
        how = "min: the race's lambda_chosen"
    print(f"chosen lambda ({how}): {report['lambda']:.6g}")


def _save_plot(curve: l2optim.CVCurve, path: str, target: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install 'l2optim[plot]'") from None
    ax = curve.plot()
    ax.set_ylabel(f"validation MSE of {target!r}")
    ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(ax.figure)


def _select_lambda(args: argparse.Namespace) -> int:
    _settle_options(args)
    if args.demo:
        path = l2optim.data.diabetes_csv()
        target = args.target or l2optim.data.DIABETES_TARGET
    else:
        path, target = Path(args.data), args.target
    X, y, features = l2optim.data.read_csv(path, sep=args.sep).split(target)
    torch.set_num_threads(1)  # small models: parallelism comes from --workers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", l2optim.LambdaAtEdgeWarning)  # a note says it below
        if args.fast:
            curve = _race(args, X, y)
        elif args.trained:
            curve = _trained_search(args, X, y)
        else:
            curve = _closed_form(args, X, y)
    setting: dict[str, Any] = {
        "data": path.name,
        "target": target,
        "n_samples": int(X.shape[0]),
        "n_features": len(features),
        "target_variance": float(np.var(y)),
        "model": args.model,
        "method": "race" if args.fast else "trained" if args.trained else "ridge_cv",
        "folds": args.folds,
        "seed": args.seed,
    }
    if args.trained:
        setting.update(
            optimizer=args.optimizer, decoupled=args.decoupled, lr=args.lr, epochs=args.epochs,
            batch_size=args.batch_size,
        )
    report = _report(args, curve, setting)
    if args.plot is not None:
        _save_plot(curve, args.plot, target)
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
    except l2optim.ObjectiveError as exc:
        cause = exc.__cause__
        _fail(f"training failed at lambda={exc.lam:.6g}: {type(cause).__name__}: {cause}")
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as Unix tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, TypeError, OSError) as exc:
        # The library's checks name the argument, the value and what is allowed.
        _fail(str(exc))
    except KeyboardInterrupt:
        resume = f"; rerun with --log {args.log} to resume" if args.log else ""
        _fail(f"interrupted{resume}", EXIT_INTERRUPTED)
