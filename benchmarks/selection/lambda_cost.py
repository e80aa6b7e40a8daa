"""What choosing λ for a network costs, and what the cheap ways lose against full k-fold CV.

Run: ``python benchmarks/selection/lambda_cost.py`` (``--splits``, ``--budgets``, ``--problems``;
``--cache FILE`` keeps full CV's choice and the test losses for a rerun that studies the
race alone; ``pip install "l2optim[bench]"`` for scikit-learn's datasets and Optuna). One
torch thread; the timings are wall-clock seconds measured side by side in one run.

Three problems where λ matters (each checked and printed: the test loss at λ = 0 is at
least 10% above the best λ's):

* ``digits``: an MLP (64-128-10, ReLU) on 300 of scikit-learn's 8×8 digits,
  cross-entropy, ``l2optim.AdamW`` (decoupled, lr 3e-3), 100 epochs of batches of 32;
* ``noisy_regression``: an MLP (100-64-1, tanh) on 150 rows with 100 features of which
  5 carry signal, half the MSE, coupled ``l2optim.SGD`` (lr 0.01, momentum 0.9),
  100 epochs of batches of 16;
* ``breast_cancer``: an MLP (30-64-1, ReLU) on 200 of scikit-learn's breast-cancer
  rows, binary cross-entropy, coupled ``l2optim.RMSprop`` (lr 3e-3), 100 epochs of
  batches of 20.

For each data split (a new train/test partition and seed; the test rows are never
seen by a search) every method chooses λ from the training rows; the final model is
then trained on all the training rows at that λ and scored on the test rows. Methods:

* ``full CV``: ``select_lambda(kfold_objective(FoldTrainer(...), folds=5))``, the
  exact search (grid of 7, then Brent); with ``--stacked-reference`` the 5 folds of each λ
  train as one stack (the same numbers to float rounding, a fraction of the wall time);
* ``race``: ``select_lambda_fast`` at each budget in ``--budgets`` (training runs), on
  its default 2 folds, at its ``lambda_chosen``; ``race B min`` is the same race at its
  best-scored λ (``lambda_min``); with ``--race-folds 5``, also on 5 folds of its own
  (``race B/5f``);
* ``grid``: a fixed log grid scored on one fold (hold-out), as many λ as the budget buys
  (trained as one stack: no λ waits for another's score);
* ``TPE``: Optuna's TPE sampler on ln λ over the same hold-out fold, as many trials as
  the budget buys (3 random start-up trials, then TPE);
* ``oracle``: the best of 25 λ on the test rows (not a method: the floor).

Cost is in training-run equivalents: optimizer steps over the steps of one training of
the final model on all training rows. ``excess`` is the mean test loss of a method over
that of full CV, minus 1, over the splits. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import functools
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from _study import Cache, race_settings
from torch import nn

import l2optim
from l2optim.selection import FoldStacks, ModelStack

FOLDS = 5
ORACLE_GRID = 25


@dataclass
class Problem:
    name: str
    bounds: tuple[float, float]
    make: Callable[[int], tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict]]


def mlp(n_in: int, hidden: int, n_out: int, activation: type[nn.Module]) -> nn.Module:
    return nn.Sequential(nn.Linear(n_in, hidden), activation(), nn.Linear(hidden, n_out))


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return (train - mean) / sd, (test - mean) / sd


def as_float(array: np.ndarray) -> torch.Tensor:
    return torch.tensor(array, dtype=torch.float32)


def sklearn_split(load, n_train: int, seed: int):
    """A scikit-learn dataset's rows split at random into n_train training rows and the rest,
    the features standardised on the training rows."""
    x, y = load(return_X_y=True)
    order = np.random.default_rng(seed).permutation(len(y))
    train, test = order[:n_train], order[n_train:]
    x_train, x_test = standardise(x[train], x[test])
    return as_float(x_train), y[train], as_float(x_test), y[test]


def sklearn_mlp(load, n_train: int, seed: int, hidden: int, **setting):
    """A scikit-learn dataset split by :func:`sklearn_split`, and an MLP with one ReLU layer of
    ``hidden`` units over its features, trained 100 epochs with ``setting``."""
    x_train, y_train, x_test, y_test = sklearn_split(load, n_train, seed)
    n_out = setting.pop("n_out", 1)
    setting = dict(
        model_factory=functools.partial(mlp, x_train.shape[1], hidden, n_out, nn.ReLU),
        epochs=100,
        **setting,
    )
    return x_train, y_train, x_test, y_test, setting


def digits(split: int):
    from sklearn.datasets import load_digits

    x_train, y_train, x_test, y_test, setting = sklearn_mlp(
        load_digits, 300, split, 128, n_out=10, loss=nn.CrossEntropyLoss(),
        optimizer=l2optim.AdamW, optimizer_kwargs={"lr": 3e-3}, batch_size=32,
    )
    return x_train, torch.tensor(y_train), x_test, torch.tensor(y_test), setting


def noisy_regression(split: int):
    rng = np.random.default_rng(1000 + split)
    n_train, n_test, p, informative = 150, 1000, 100, 5
    x = rng.normal(size=(n_train + n_test, p))
    w = rng.normal(size=informative)
    signal = x[:, :informative] @ w
    y = 2 * np.tanh(signal) + signal + rng.normal(size=len(x))
    x_train, x_test = standardise(x[:n_train], x[n_train:])
    y_train, y_test = standardise(y[:n_train, None], y[n_train:, None])
    setting = dict(
        model_factory=functools.partial(mlp, p, 64, 1, nn.Tanh),
        optimizer=l2optim.SGD,
        optimizer_kwargs={"lr": 0.01, "momentum": 0.9},
        epochs=100,
        batch_size=16,
    )
    return (
        as_float(x_train),
        as_float(y_train[:, 0]),
        as_float(x_test),
        as_float(y_test[:, 0]),
        setting,
    )


def breast_cancer(split: int):
    from sklearn.datasets import load_breast_cancer

    x_train, y_train, x_test, y_test, setting = sklearn_mlp(
        load_breast_cancer, 200, 2000 + split, 64, loss=nn.BCEWithLogitsLoss(),
        optimizer=l2optim.RMSprop, optimizer_kwargs={"lr": 3e-3}, batch_size=20,
    )
    return x_train, as_float(y_train), x_test, as_float(y_test), setting


PROBLEMS = {
    "digits": Problem("digits", (1e-3, 30.0), digits),
    "noisy_regression": Problem("noisy_regression", (1e-4, 3.0), noisy_regression),
    "breast_cancer": Problem("breast_cancer", (1e-5, 1.0), breast_cancer),
}


# --------------------------------------------------------------------------- costs


def steps(rows: int, trainer: l2optim.FoldTrainer) -> int:
    """Optimizer steps of one training of ``trainer`` on ``rows`` rows."""
    batch = trainer.batch_size
    return trainer.epochs * (1 if batch is None else math.ceil(rows / batch))


def run_steps(trainer: l2optim.FoldTrainer) -> int:
    return steps(len(trainer.X), trainer)


# --------------------------------------------------------------------------- methods


class StackedFolds:
    """``objective(lam)``: the k fold scores of ``FoldTrainer`` at λ, its folds trained as one
    stack (the same numbers, to float rounding, in a fraction of the wall time)."""

    def __init__(self, trainer: l2optim.FoldTrainer, splits) -> None:
        self.trainer, self.splits = trainer, splits

    def __call__(self, lam: float) -> tuple[float, ...]:
        runs = FoldStacks(self.trainer, self.splits, [lam])
        runs.train_to(self.trainer.epochs)
        return tuple(runs.scores()[0])


def full_cv(trainer, problem, splits, seed, stacked=False):
    objective = l2optim.kfold_objective(trainer, len(trainer.X), folds=FOLDS, random_state=seed)
    if stacked:
        objective = StackedFolds(trainer, objective.splits)
    search = l2optim.select_lambda(objective, problem.bounds, progress=False)
    fold_steps = sum(steps(len(train), trainer) for train, _ in splits)
    return search.lambda_min, len(search.evaluations) * fold_steps / run_steps(trainer)


def race(trainer, problem, splits, seed, budget, folds=None, pick="lambda_chosen", options=None):
    # With ``folds``, the race runs on a k-fold split of its own with that many folds.
    # ``pick`` names the λ of the result that the final model trains at; ``options`` are
    # more arguments of select_lambda_fast (a study of its settings).
    options = dict(options or {})
    if folds is not None:
        options["folds"] = folds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", l2optim.LambdaAtEdgeWarning)
        found = l2optim.select_lambda_fast(
            trainer, problem.bounds, budget=budget, random_state=seed, **options
        )
    return getattr(found, pick), found.run_equivalents


def holdout_trials(trainer, budget, splits) -> int:
    """How many hold-out trainings (the first fold) the budget buys."""
    return max(1, int(budget * run_steps(trainer) // steps(len(splits[0][0]), trainer)))


def grid(trainer, problem, splits, seed, budget):
    n = holdout_trials(trainer, budget, splits)
    lambdas = np.geomspace(*problem.bounds, n)
    # A fixed grid needs no answer before its next λ: its runs train as one stack.
    stack = ModelStack(trainer, splits, [0] * n, lambdas)
    stack.train(trainer.epochs)
    chosen = float(lambdas[int(np.argmin(stack.scores()))])
    return chosen, n * steps(len(splits[0][0]), trainer) / run_steps(trainer)


def tpe(trainer, problem, splits, seed, budget):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    train, test = splits[0]
    n = holdout_trials(trainer, budget, splits)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(3, n))
    study = optuna.create_study(sampler=sampler)
    lo, hi = problem.bounds

    def objective(trial):
        score = trainer(trial.suggest_float("lam", lo, hi, log=True), train, test)
        return score if math.isfinite(score) else 1e30

    study.optimize(objective, n_trials=n)
    return study.best_params["lam"], n * steps(len(train), trainer) / run_steps(trainer)


def test_losses(setting, x_train, y_train, x_test, y_test, lambdas, seed) -> np.ndarray:
    """Test loss of the final model (all training rows) at each λ, as FoldTrainer trains it."""
    x = torch.cat([x_train, x_test])
    y = torch.cat([y_train, y_test])
    final = l2optim.FoldTrainer(X=x, y=y, seed=seed, **setting)
    rows = (np.arange(len(x_train)), np.arange(len(x_train), len(x)))
    stack = ModelStack(final, [rows], [0] * len(lambdas), list(lambdas))
    stack.train(final.epochs)
    return stack.scores()


# --------------------------------------------------------------------------- the table


def run(
    problem: Problem,
    splits_run: range,
    budgets: list[float],
    stacked: bool,
    race_folds: list[int],
    families: set[str],
    variants: dict[str, dict] | None = None,
    cache: Cache | None = None,
) -> None:
    methods: dict[str, Callable] = {"full CV": functools.partial(full_cv, stacked=stacked)}
    for budget in budgets:
        methods[f"race {budget:g}"] = functools.partial(race, budget=budget)
        for label, options in (variants or {}).items():
            methods[f"race {budget:g} {label}"] = functools.partial(
                race, budget=budget, options=options
            )
        methods[f"race {budget:g} min"] = functools.partial(race, budget=budget, pick="lambda_min")
        for folds in race_folds:
            methods[f"race {budget:g}/{folds}f"] = functools.partial(race, budget=budget, folds=folds)
    for budget in budgets:
        methods[f"grid {budget:g}"] = functools.partial(grid, budget=budget)
        methods[f"TPE {budget:g}"] = functools.partial(tpe, budget=budget)
    methods = {
        name: method for name, method in methods.items()
        if name == "full CV" or name.split()[0] in families
    }
    results = {name: {"loss": [], "cost": [], "seconds": []} for name in [*methods, "oracle"]}
    print(f"\n{problem.name}: bounds {problem.bounds}, {FOLDS}-fold CV, splits {splits_run}")
    for done, split in enumerate(splits_run, 1):
        x_train, y_train, x_test, y_test, setting = problem.make(split)
        trainer = l2optim.FoldTrainer(X=x_train, y=y_train, seed=split, **setting)
        splits = l2optim.kfold_splits(len(x_train), FOLDS, random_state=split)
        entry = (cache or Cache(None)).entry(problem.name, split)
        chosen = {}
        for name, method in methods.items():
            start = time.perf_counter()
            if name == "full CV" and "full CV" in entry:
                lam, cost, seconds = entry["full CV"]
            else:
                lam, cost = method(trainer, problem, splits, split)
                seconds = time.perf_counter() - start
                if name == "full CV":
                    entry["full CV"] = (lam, cost, seconds)
            results[name]["seconds"].append(seconds)
            results[name]["cost"].append(cost)
            chosen[name] = lam
        oracle_grid = np.geomspace(*problem.bounds, ORACLE_GRID)
        lambdas = [0.0, *oracle_grid, *chosen.values()]
        # Cached test losses are those of an earlier stack: the same to float rounding.
        missing = sorted({repr(float(lam)) for lam in lambdas} - set(entry["test"]))
        if missing:
            fresh = test_losses(
                setting, x_train, y_train, x_test, y_test, [float(k) for k in missing], split
            )
            entry["test"].update(zip(missing, map(float, fresh), strict=True))
        if cache is not None:
            cache.save()
        losses = np.array([entry["test"][repr(float(lam))] for lam in lambdas])
        at_zero, on_grid = losses[0], losses[1 : 1 + ORACLE_GRID]
        for name, loss in zip(chosen, losses[1 + ORACLE_GRID :], strict=True):
            results[name]["loss"].append(loss)
        results["oracle"]["loss"].append(on_grid.min())
        results["oracle"]["cost"].append(math.nan)
        results["oracle"]["seconds"].append(math.nan)
        matters = at_zero / on_grid.min() - 1
        print(
            f"  split {split}: test loss at λ=0 {at_zero:.4f}, best {on_grid.min():.4f} "
            f"(λ={oracle_grid[np.argmin(on_grid)]:.3g}): λ=0 is {matters:+.0%} "
            f"{'(λ matters)' if matters >= 0.10 else '(BELOW the 10% check)'}; "
            f"full CV λ={chosen['full CV']:.3g}, "
            + ", ".join(f"{n} λ={v:.3g}" for n, v in chosen.items() if n.startswith("race"))
        )
        # After every split, so that a run cut short still has its table.
        print_table(results, done)


def print_table(results: dict, done: int) -> None:
    """The mean over the ``done`` splits so far of each method's cost, time and test loss."""
    reference = np.mean(results["full CV"]["loss"])
    print(f"  mean over {done} split{'s' if done > 1 else ''}:")
    print(f"  {'method':<36}{'runs':>8}{'seconds':>10}{'test loss':>11}{'excess':>9}")
    for name, row in results.items():
        loss = np.mean(row["loss"])
        print(
            f"  {name:<36}{np.mean(row['cost']):8.2f}{np.mean(row['seconds']):10.2f}"
            f"{loss:11.4f}{loss / reference - 1:+9.2%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument(
        "--first-split", type=int, default=0, help="the seed of the first split (runs side by "
        "side can share the splits out)"
    )
    parser.add_argument("--budgets", default="5,12", help="comma-separated training runs")
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument(
        "--stacked-reference",
        action="store_true",
        help="full CV trains the folds of each λ as one stack: the same search on the same "
        "numbers (to float rounding), not the same wall time",
    )
    parser.add_argument(
        "--race-folds",
        default="",
        help="comma-separated fold counts: also race at each budget on a split with that many "
        "folds ('race B/5f')",
    )
    parser.add_argument(
        "--race-variants",
        default="",
        help="';'-separated select_lambda_fast settings raced beside the default, each a "
        "comma-separated list of name=value ('scaling_exponent=0.5;reference_folds=None')",
    )
    parser.add_argument(
        "--cache",
        help="a JSON file that keeps full CV's choices and the test losses between runs",
    )
    parser.add_argument(
        "--methods",
        default="race,grid,TPE",
        help="comma-separated methods to set against full CV (always run): race, grid, TPE",
    )
    args = parser.parse_args()
    families = set(args.methods.split(","))
    if not families <= {"race", "grid", "TPE"}:
        parser.error(f"--methods takes race, grid and TPE, got {args.methods!r}")
    torch.set_num_threads(1)
    budgets = [float(b) for b in args.budgets.split(",")]
    print(
        "Choosing λ: cost in training runs, wall seconds, mean test loss of the final model, "
        "and its excess over full CV's (one torch thread; a shared machine)"
    )
    cache = Cache(args.cache)
    for name in args.problems.split(","):
        race_folds = [int(f) for f in args.race_folds.split(",") if f]
        splits_run = range(args.first_split, args.first_split + args.splits)
        variants = {
            text: race_settings(text) for text in filter(None, args.race_variants.split(";"))
        }
        run(PROBLEMS[name], splits_run, budgets, args.stacked_reference, race_folds, families,
            variants, cache)


if __name__ == "__main__":
    main()
