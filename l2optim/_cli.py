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

A target of a few integer values (class labels) is a classification, ``--task`` says so
explicitly: the model is trained with cross-entropy and scored by the validation log
loss, and the accuracy at the chosen λ is reported.

``--demo`` uses the diabetes data shipped in :mod:`l2optim.data`. The command only
declares its options and calls the public API: bad input, found by the library, ends it
with exit status 2 and one line on stderr, ``l2optim: error: ...``, before any training.
"""

from __future__ import annotations

import argparse
import dataclasses
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
from torch.nn import functional as F

import l2optim
from l2optim.selection import STOP_REASONS

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
#: --task auto takes an integer target with at most this many values for class labels.
MAX_DETECTED_CLASSES = 20
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
            "by k-fold cross-validation. The file has a header row and numbers only (an "
            "unnamed first column, the index pandas writes, is left out; --drop leaves out "
            "others). Inside each fold the features are standardised on the training rows "
            "(mean 0, standard deviation 1), as a scikit-learn Pipeline would. Regression "
            "scores are validation mean squared errors in the target's units: --model ridge "
            "is answered exactly, by l2optim.ridge_cv on the same folds (λ minimises "
            "(1/2n)||Xw + b - y||^2 + (λ/2)||w||^2 on each training fold); --trained (and "
            "--model mlp) trains the model with an l2optim optimizer instead (target "
            "standardised too), searching a log grid and then Brent's method on log λ. "
            "Classification (a target of class labels) trains with cross-entropy, scores the "
            "validation log loss and reports the accuracy at the chosen λ. λ decays weights, "
            "not biases. One torch thread per process; --workers trains folds in parallel."
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
        "--drop",
        nargs="+",
        default=(),
        metavar="COL",
        help="leave these columns out (an identifier, say); they need not hold numbers",
    )
    data.add_argument(
        "--task",
        choices=["auto", "regression", "classification"],
        default="auto",
        help="classification: the target's values are class labels, trained with "
        "cross-entropy and scored by log loss (accuracy reported); auto: classification "
        f"when the target holds at most {MAX_DETECTED_CLASSES} distinct integers "
        "(default: %(default)s)",
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
        help=f"ridge: a linear model (logistic regression for classification, always "
        f"trained); mlp: one hidden layer of {MLP_HIDDEN} tanh units (default: %(default)s)",
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
        help="append each evaluation to FILE (JSON lines); rerun with the same options to "
        "resume (a log written with other data or training options is refused)",
    )
    race = select.add_argument_group(
        "fast search",
        "The race ends refining λ at its last rung for one of these reasons (the 'stop' it "
        "prints): " + "; ".join(f"{stop}: {why}" for stop, why in STOP_REASONS.items())
        + ".",
    )
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
    if args.target is not None and args.target in args.drop:
        raise ValueError(f"--drop {args.target} leaves out the --target column")
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
    if args.task == "classification":
        args.trained = True


def _settle_training(args: argparse.Namespace, task: _Task) -> None:
    """The training options' defaults, once the target tells whether the search trains:
    a classifier has no closed form, so its logistic regression is trained."""
    args.trained = args.trained or task.labels is not None
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


@dataclasses.dataclass(frozen=True)
class _Task:
    """Regression, or classification with its class labels (the target's values)."""

    labels: np.ndarray | None = None
    detected: bool = False

    @property
    def classes(self) -> int:
        return 0 if self.labels is None else len(self.labels)

    def header(self, target: str) -> str:
        if self.labels is None:
            return f"target {target!r}"
        shown = ", ".join(f"{v:g}" for v in self.labels[:6]) + (", …" if self.classes > 6 else "")
        why = (
            "detected from its integer values; --task regression to fit them as numbers"
            if self.detected else "as asked"
        )
        return f"target {target!r} as {self.classes} classes ({shown}; {why})"


def _task(asked: str, y: np.ndarray) -> _Task:
    labels = np.unique(y)
    if asked == "regression":
        return _Task()
    integers = bool(np.all(labels == np.round(labels)))
    if asked == "auto" and not (integers and 2 <= len(labels) <= MAX_DETECTED_CLASSES):
        return _Task()
    if len(labels) < 2:
        raise ValueError(f"classification needs at least two classes; the target holds one value, {labels[0]:g}")
    return _Task(labels, detected=asked == "auto")


# --------------------------------------------------------------------------- the search


def _mlp(n_features: int, hidden: int, outputs: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, outputs))


def _error_rate(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """1 − accuracy, lower is better as every score: the accuracy reported for a classifier."""
    return (logits.argmax(dim=-1) != labels).double().mean()


def _trainer(
    args: argparse.Namespace, X: np.ndarray, y: np.ndarray, task: _Task, score: Any = None
) -> l2optim.FoldTrainer:
    optimizer, fixed = OPTIMIZERS[args.optimizer]
    n_features, outputs = X.shape[1], max(task.classes, 1)
    if args.model == "ridge":
        factory = functools.partial(nn.Linear, n_features, outputs)
    else:
        factory = functools.partial(_mlp, n_features, MLP_HIDDEN, outputs)
    if task.labels is None:
        target, loss = torch.as_tensor(y, dtype=torch.float32), None
    else:
        target = torch.as_tensor(np.searchsorted(task.labels, y), dtype=torch.long)
        loss = F.cross_entropy  # its mean over the held-out rows is the log loss
    return l2optim.FoldTrainer(
        factory,
        torch.as_tensor(X, dtype=torch.float32),
        target,
        loss=loss,
        score=score,
        optimizer=optimizer,
        optimizer_kwargs={**fixed, "lr": args.lr},
        decoupled_weight_decay=args.decoupled,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        standardize=True,
    )


def _accuracy(args: argparse.Namespace, X, y, task: _Task, lam: float, folds: int) -> float:
    """The mean validation accuracy at ``lam`` over ``folds`` folds of the command's seed."""
    trainer = _trainer(args, X, y, task, score=_error_rate)
    errors = l2optim.kfold_objective(trainer, len(y), folds=folds, random_state=args.seed)(lam)
    return 1.0 - float(np.mean(errors))


def _trained_search(
    args: argparse.Namespace, X: np.ndarray, y: np.ndarray, task: _Task
) -> l2optim.LambdaSearch:
    objective = l2optim.kfold_objective(
        _trainer(args, X, y, task),
        len(y),
        folds=args.folds,
        random_state=args.seed,
        workers=None if args.workers == 1 else args.workers,
    )
    if args.log is not None:
        _check_log_setting(Path(args.log), _objective_setting(args))
    with objective:
        return l2optim.select_lambda(
            objective,
            bounds=args.bounds,
            n_grid=args.n_grid,
            xtol=args.xtol,
            log=args.log,
            progress=not args.json and sys.stderr.isatty(),
        )


#: The options that define the objective a log's scores belong to (not how it is searched).
_OBJECTIVE_OPTIONS = (
    "data", "target", "sep", "drop", "task", "demo", "model", "trained", "optimizer",
    "decoupled", "lr", "epochs", "batch_size", "folds", "seed",
)


def _objective_setting(args: argparse.Namespace) -> dict[str, Any]:
    setting = {name: getattr(args, name, None) for name in _OBJECTIVE_OPTIONS}
    if setting["data"] is not None:
        setting["data"] = str(Path(setting["data"]).resolve())
    setting["drop"] = list(setting["drop"] or ())
    return json.loads(json.dumps(setting, default=str))  # as it reads back


def _check_log_setting(path: Path, setting: dict[str, Any]) -> None:
    """A log resumes only the objective it was written for: its first line records the
    options that define it; a log of other options is refused, naming them."""
    if path.exists() and path.stat().st_size > 0:
        with path.open(encoding="utf-8") as lines:
            try:
                written = json.loads(lines.readline()).get("setting")
            except (ValueError, AttributeError):
                written = None
        if written is not None and written != setting:
            changed = ", ".join(
                f"--{name.replace('_', '-')} {written.get(name)!r} (now {value!r})"
                for name, value in setting.items()
                if written.get(name) != value
            )
            raise ValueError(
                f"--log {path} holds the scores of another setting: {changed}; give another "
                "file, or the options it was written with to resume it"
            )
        return
    with path.open("a", encoding="utf-8") as file:
        file.write(json.dumps({"setting": setting}) + "\n")


def _race(
    args: argparse.Namespace, X: np.ndarray, y: np.ndarray, task: _Task
) -> l2optim.LambdaRace:
    budget = _library_default(l2optim.select_lambda_fast, "budget")
    return l2optim.select_lambda_fast(
        _trainer(args, X, y, task),
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
        "gain_over_smallest_lambda": curve.gain_over_smallest(),
        "evaluations": rows,
    }
    if isinstance(curve, l2optim.LambdaRace):
        report["race"] = {
            "rungs": [{"epochs": r.epochs, "lambdas": r.lambdas.tolist()} for r in curve.rungs],
            "epochs": curve.final.epochs,
            "stop": curve.stop,
            "run_equivalents": curve.run_equivalents,
            "cost": curve.cost,
            "cost_per_run": curve.cost_per_run,
            "cost_unit": curve.cost_unit,
            "optimizer_steps": curve.optimizer_steps,
            "steps_per_run": curve.steps_per_run,
            "seconds": curve.seconds,
            "train_scale": curve.train_scale,
            "reference_folds": _library_default(l2optim.select_lambda_fast, "reference_folds"),
            "lambda_chosen": curve.lambda_chosen,
        }
    return report


def _print_table(report: dict[str, Any], curve: l2optim.CVCurve) -> None:
    where = (
        f"{report['data']}: {report['n_samples']} rows, {report['n_features']} features, "
        f"{report['target_description']}; "
    )
    if report["method"] == "ridge_cv":
        how = (
            f"ridge by the closed form (l2optim.ridge_cv), {report['folds']}-fold CV, "
            "features standardised within each training fold"
        )
    else:
        form = "decoupled" if report["decoupled"] else "coupled"
        model = report["model"]
        if report["task"] == "classification":
            model = "logistic regression" if model == "ridge" else f"{model} classifier"
        scaled = "features" if report["task"] == "classification" else "features and target"
        how = (
            ("λ raced (l2optim.select_lambda_fast), " if report["method"] == "race" else "")
            + f"{model} trained with {report['optimizer']} ({form} weight decay), "
            f"{report['folds']}-fold CV, {scaled} standardised within each training fold"
        )
    print(where + how)
    for note in report["notes"]:
        print(f"note: {note}")
    print(curve.summary(title=False, score=report["score_heading"]))
    print(f"scores: {report['score']}")
    if report["at_edge"] is not None:
        side = "below" if report["at_edge"] == "lower" else "above"
        lo, hi = report["bounds"]
        print(
            f"note: lambda_min is at the {report['at_edge']} end of the search bounds "
            f"[{lo:.4g}, {hi:.4g}]; the best lambda may lie {side} them: widen --bounds"
        )
    race = report.get("race")
    if race is not None:
        rungs = ", ".join(f"{len(r['lambdas'])} λ × {r['epochs']}" for r in race["rungs"])
        print(
            f"race: rungs of {rungs} epochs; the scores above are after {race['epochs']} "
            f"epochs (stop: {race['stop']}: {STOP_REASONS[race['stop']]}); each run trained "
            f"at {race['train_scale']:.4g} λ, so that λ is on {race['reference_folds']}-fold "
            "CV's scale"
        )
        print(
            f"cost: {race['run_equivalents']:.2f} training-run equivalents "
            f"({race['cost']:.0f} {race['cost_unit']}, {race['cost_per_run']:.0f} per run), "
            f"{race['seconds']:.1f} s"
        )
    if report.get("accuracy") is not None:
        print(
            f"accuracy at the chosen lambda: {report['accuracy']:.4g}, the mean over "
            f"{report['accuracy_folds']} validation folds ({report['accuracy_folds']} more "
            "trainings, not counted above)"
        )
    how = report["rule"]
    if race is not None and how == "min":
        how = "min: the race's lambda_chosen"
    print(f"chosen lambda ({how}): {report['lambda']:.6g}")


def _save_plot(curve: l2optim.CVCurve, path: str, score: str) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("--plot needs matplotlib: pip install 'l2optim[plot]'") from None
    ax = curve.plot()
    ax.set_ylabel(score)
    ax.figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(ax.figure)


def _row_counters(X: np.ndarray, features: list[str]) -> list[str]:
    """Features that count the rows (0, 1, 2, …): identifiers, most likely, not features."""
    steps = np.diff(X, axis=0)
    return [
        name for j, name in enumerate(features)
        if len(X) > 2 and np.all(X[:, j] == np.round(X[:, j])) and np.all(np.abs(steps[:, j]) == 1)
        and len(np.unique(steps[:, j])) == 1
    ]


def _notes(table: l2optim.data.Table, X: np.ndarray, features: list[str]) -> list[str]:
    notes = []
    if "" in table.dropped:
        notes.append(
            "left out the unnamed first column (the index pandas' to_csv writes); "
            "--drop COL leaves out others"
        )
    notes += [
        f"column {name!r} counts the rows (an identifier?); --drop {name} leaves it out"
        for name in _row_counters(X, features)
    ]
    return notes


def _scores(task: _Task, target: str, y: np.ndarray) -> tuple[str, str, str]:
    """(what the scores are, the table's heading, the plot's label)."""
    if task.labels is None:
        return (
            f"validation MSE of {target!r} in its units (predicting the mean scores about its "
            f"variance, {float(np.var(y)):.6g})",
            "mean MSE",
            f"validation MSE of {target!r}",
        )
    frequencies = np.unique(y, return_counts=True)[1] / len(y)
    entropy = float(-(frequencies * np.log(frequencies)).sum())
    return (
        f"validation log loss (mean cross-entropy, in nats) of the classes of {target!r} "
        f"(predicting the class frequencies scores about their entropy, {entropy:.4g})",
        "log loss",
        f"validation log loss of {target!r}",
    )


def _select_lambda(args: argparse.Namespace) -> int:
    _settle_options(args)
    if args.demo:
        path = l2optim.data.diabetes_csv()
        target = args.target or l2optim.data.DIABETES_TARGET
    else:
        path, target = Path(args.data), args.target
    table = l2optim.data.read_csv(path, sep=args.sep, drop=args.drop)
    X, y, features = table.split(target)
    task = _task(args.task, y)
    _settle_training(args, task)
    torch.set_num_threads(1)  # small models: parallelism comes from --workers
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", l2optim.LambdaAtEdgeWarning)  # a note says it below
        if args.fast:
            curve = _race(args, X, y, task)
        elif args.trained:
            curve = _trained_search(args, X, y, task)
        else:
            curve = _closed_form(args, X, y)
    score, heading, label = _scores(task, target, y)
    setting: dict[str, Any] = {
        "data": path.name,
        "target": target,
        "target_description": task.header(target),
        "task": "regression" if task.labels is None else "classification",
        "classes": None if task.labels is None else task.labels.tolist(),
        "dropped": list(table.dropped),
        "notes": _notes(table, X, features),
        "n_samples": int(X.shape[0]),
        "n_features": len(features),
        "target_variance": float(np.var(y)),
        "model": args.model,
        "method": "race" if args.fast else "trained" if args.trained else "ridge_cv",
        "folds": args.folds,
        "seed": args.seed,
        "score": score,
        "score_heading": heading,
    }
    if args.trained:
        setting.update(
            optimizer=args.optimizer, decoupled=args.decoupled, lr=args.lr, epochs=args.epochs,
            batch_size=args.batch_size,
        )
    report = _report(args, curve, setting)
    if task.labels is not None:
        # The race's λ is on reference_folds-fold CV's scale: its accuracy is measured there.
        folds = report["race"]["reference_folds"] if args.fast else args.folds
        report["accuracy"] = _accuracy(args, X, y, task, report["lambda"], folds)
        report["accuracy_folds"] = folds
    if args.plot is not None:
        _save_plot(curve, args.plot, label)
    if args.json:
        print(json.dumps(report))
    else:
        _print_table(report, curve)
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
