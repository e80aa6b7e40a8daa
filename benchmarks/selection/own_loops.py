"""Choosing λ for networks trained by their own loops: what each way costs and loses.

Run: ``python benchmarks/selection/own_loops.py`` (``--splits``, ``--first-split``,
``--problems``, ``--methods``, ``--budget``; ``pip install "l2optim[bench]"`` for
scikit-learn's datasets and Optuna). One torch thread; nothing is asserted.

Each problem is a network trained the way a user trains one: a DataLoader over the
training rows, an lr schedule stepped per batch, the problem's own loss, and a
*training function* ``train(lam, train_idx, val_idx)`` that yields the validation score
after each epoch (``l2optim.select_lambda_fast``'s interface):

* ``regression``: an MLP (60-64-1, tanh) on 200 rows of 60 features, 5 of which carry a
  signal, MSE, ``l2optim.AdamW`` under ``OneCycleLR`` (max lr 1e-2), 40 epochs of 20 rows;
* ``noisy_classes``: an MLP (80-64-3, ReLU) on 200 rows of 80 features, 5 of which set
  the class probabilities, cross-entropy scored by log loss, the features of every batch
  jittered anew (augmentation), coupled ``l2optim.SGD`` (momentum 0.9) under cosine
  annealing, 60 epochs of 20;
* ``wide_regression``: an MLP (100-64-1, tanh) on 150 rows of 100 features, 5 of which
  carry a signal, MSE, coupled ``l2optim.RMSprop`` under a step decay (×0.3 twice), 60
  epochs of 16;
* ``two_towers``: a classifier whose groups want different λ: 60 features each carry a
  weak linear effect on the class (a linear tower, 60-3) and 5 carry a strong nonlinear one
  (an MLP tower, 5-32-3, ReLU); the towers' logits add. 300 rows, cross-entropy scored by
  log loss, coupled ``l2optim.SGD`` (momentum 0.9) under cosine annealing, 60 epochs of 20.
  One λ must either let the dense tower overfit or starve the strong one.

For each data split (a new train/test partition and seed; no search sees the test rows)
every method chooses λ from the training rows; the final model then trains on every
training row at that λ and is scored on the test rows. Methods:

* ``full CV``: ``select_lambda`` over 5-fold ``kfold_objective`` of the training function
  run to its end (the reference);
* ``race``: ``select_lambda_fast(train, ...)`` at ``--budget`` training runs;
* ``TPE+pruner``: Optuna's TPE sampler on ln λ with its median pruner, on one hold-out
  fold (a fifth of the rows), each trial reporting its validation score after every epoch,
  until the trials have trained the rows the budget buys;
* ``grid``: a log grid on the same hold-out fold, as many λ as the budget buys;
* ``oracle``: the best of 25 λ on the test rows (not a method: the floor).

Cost is counted the same way for all, in training runs: the rows trained on (an epoch of a
run costs its training rows) over ``epochs × rows`` of one training on every training row.
``excess`` is a method's mean test loss over full CV's, minus 1; ``worst`` the largest
excess of one split; ``λ/full`` the median ratio of its λ to full CV's.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from _study import Cache, race_settings
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import l2optim

FOLDS = 5
ORACLE_GRID = 25


# --------------------------------------------------------------------------- the problems


@dataclass
class Loop:
    """One problem on one data split: the data, and how its network trains and scores."""

    name: str
    bounds: tuple[float, float]
    epochs: int
    x: torch.Tensor
    y: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    model: Callable[[], nn.Module]
    optimizer: Callable[[list, float], torch.optim.Optimizer]
    schedule: Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler]
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    batch_size: int
    seed: int
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None

    @property
    def n(self) -> int:
        return len(self.y)

    def by_epoch(
        self, groups: Callable[[nn.Module], list[dict]], train_idx, lam: float = 0.0
    ) -> Iterator[tuple[nn.Module, torch.optim.Optimizer] | None]:
        """The training loop: a fresh model with the param groups ``groups(model)`` gives;
        after each epoch, the model (in eval mode) and its optimizer, or ``None`` and the end
        once the loss is not finite."""
        torch.manual_seed(self.seed)
        model = self.model()
        optimizer = self.optimizer(groups(model), lam)
        loader = DataLoader(
            TensorDataset(self.x[train_idx], self.y[train_idx]),
            batch_size=self.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(self.seed),
        )
        schedule = self.schedule(optimizer, self.epochs * len(loader))
        noise = torch.Generator().manual_seed(self.seed + 1)
        for _ in range(self.epochs):
            model.train()
            for xb, yb in loader:
                if self.augment is not None:
                    xb = self.augment(xb, noise)
                optimizer.zero_grad()
                loss = self.loss(model(xb), yb)
                if not torch.isfinite(loss):
                    yield None
                    return
                loss.backward()
                optimizer.step()
                schedule.step()
            model.eval()
            yield model, optimizer

    def run(self, lam: float, train_idx, x_val: torch.Tensor, y_val: torch.Tensor) -> Iterator[float]:
        """A fresh model at λ; the validation loss after each epoch."""
        for trained in self.by_epoch(lambda model: l2optim.decay_groups(model, lam), train_idx, lam):
            if trained is None:
                yield math.inf
                return
            with torch.no_grad():
                yield float(self.loss(trained[0](x_val), y_val))

    def train(self, lam: float, train_idx, val_idx) -> Iterator[float]:
        """The training function the searches race and cross-validate."""
        yield from self.run(lam, train_idx, self.x[val_idx], self.y[val_idx])

    def test_loss(self, lam: float) -> float:
        """The final model: every training row at λ, scored on the test rows."""
        *_, last = self.run(lam, np.arange(self.n), self.x_test, self.y_test)
        return last


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mean, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return (train - mean) / sd, (test - mean) / sd


def _sample_classes(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One class per row, drawn from the softmax of its logits."""
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    return np.array([rng.choice(logits.shape[1], p=row) for row in probabilities])


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(a, dtype=torch.float32)


def regression(split: int) -> Loop:
    rng = np.random.default_rng(3000 + split)
    n, n_test, p, informative = 200, 1000, 60, 5
    x = rng.normal(size=(n + n_test, p))
    signal = x[:, :informative] @ rng.normal(size=informative)
    y = 2 * np.tanh(signal) + signal + rng.normal(size=len(x))
    x_train, x_test = _standardise(x[:n], x[n:])
    y_train, y_test = _standardise(y[:n, None], y[n:, None])
    epochs = 40
    return Loop(
        "regression", (1e-2, 30.0), epochs, _tensor(x_train), _tensor(y_train[:, 0]),
        _tensor(x_test), _tensor(y_test[:, 0]),
        model=lambda: nn.Sequential(nn.Linear(p, 64), nn.Tanh(), nn.Linear(64, 1)),
        optimizer=lambda groups, lam: l2optim.AdamW(groups, lr=1e-2),
        schedule=lambda opt, steps: torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=1e-2, total_steps=steps
        ),
        loss=lambda out, target: nn.functional.mse_loss(out.squeeze(-1), target),
        batch_size=20, seed=split,
    )


def noisy_classes(split: int) -> Loop:
    rng = np.random.default_rng(6000 + split)
    n, n_test, p, informative, classes = 200, 1000, 80, 5, 3
    x = rng.normal(size=(n + n_test, p))
    logits = 2 * x[:, :informative] @ rng.normal(size=(informative, classes))
    y = _sample_classes(logits, rng)
    x_train, x_test = _standardise(x[:n], x[n:])
    return Loop(
        "noisy_classes", (1e-5, 1.0), 60, _tensor(x_train), torch.as_tensor(y[:n]),
        _tensor(x_test), torch.as_tensor(y[n:]),
        model=lambda: nn.Sequential(nn.Linear(p, 64), nn.ReLU(), nn.Linear(64, classes)),
        optimizer=lambda groups, lam: l2optim.SGD(groups, lr=0.05, momentum=0.9),
        schedule=lambda opt, steps: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps),
        loss=nn.functional.cross_entropy, batch_size=20, seed=split,
        # Augmentation: each batch's features jittered anew.
        augment=lambda xb, noise: xb + 0.1 * torch.randn(xb.shape, generator=noise),
    )


def wide_regression(split: int) -> Loop:
    rng = np.random.default_rng(7000 + split)
    n, n_test, p, informative = 150, 1000, 100, 5
    x = rng.normal(size=(n + n_test, p))
    signal = x[:, :informative] @ rng.normal(size=informative)
    y = 2 * np.tanh(signal) + signal + rng.normal(size=len(x))
    x_train, x_test = _standardise(x[:n], x[n:])
    y_train, y_test = _standardise(y[:n, None], y[n:, None])
    return Loop(
        "wide_regression", (1e-4, 3.0), 60, _tensor(x_train), _tensor(y_train[:, 0]),
        _tensor(x_test), _tensor(y_test[:, 0]),
        model=lambda: nn.Sequential(nn.Linear(p, 64), nn.Tanh(), nn.Linear(64, 1)),
        optimizer=lambda groups, lam: l2optim.RMSprop(groups, lr=3e-3),
        schedule=lambda opt, steps: torch.optim.lr_scheduler.StepLR(
            opt, step_size=steps // 3, gamma=0.3
        ),
        loss=lambda out, target: nn.functional.mse_loss(out.squeeze(-1), target),
        batch_size=16, seed=split,
    )


class TwoTowers(nn.Module):
    """A linear tower on the many weak features and an MLP on the few strong ones."""

    def __init__(self, dense: int, strong: int, classes: int) -> None:
        super().__init__()
        self.dense = dense
        self.linear = nn.Linear(dense, classes)
        self.mlp = nn.Sequential(nn.Linear(strong, 32), nn.ReLU(), nn.Linear(32, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x[..., : self.dense]) + self.mlp(x[..., self.dense :])


def two_towers(split: int) -> Loop:
    rng = np.random.default_rng(8000 + split)
    n, n_test, dense, strong, classes = 300, 1000, 60, 5, 3
    x = rng.normal(size=(n + n_test, dense + strong))
    weak = x[:, :dense] @ rng.normal(scale=0.15, size=(dense, classes))
    hidden = np.maximum(x[:, dense:] @ rng.normal(size=(strong, 16)), 0)
    logits = weak + hidden @ rng.normal(scale=0.5, size=(16, classes))
    y = _sample_classes(logits, rng)
    x_train, x_test = _standardise(x[:n], x[n:])
    return Loop(
        "two_towers", (1e-5, 1.0), 60, _tensor(x_train), torch.as_tensor(y[:n]),
        _tensor(x_test), torch.as_tensor(y[n:]),
        model=lambda: TwoTowers(dense, strong, classes),
        optimizer=lambda groups, lam: l2optim.SGD(groups, lr=0.05, momentum=0.9),
        schedule=lambda opt, steps: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps),
        loss=nn.functional.cross_entropy, batch_size=20, seed=split,
    )


PROBLEMS: dict[str, Callable[[int], Loop]] = {
    "regression": regression,
    "noisy_classes": noisy_classes,
    "wide_regression": wide_regression,
    "two_towers": two_towers,
}


# --------------------------------------------------------------------------- the methods


def full_cv(loop: Loop, budget: float, race_options: dict) -> tuple[float, float]:
    def fit_score(lam, train_idx, val_idx):
        *_, last = loop.train(lam, train_idx, val_idx)
        return last

    objective = l2optim.kfold_objective(fit_score, loop.n, folds=FOLDS, random_state=loop.seed)
    search = l2optim.select_lambda(objective, loop.bounds, progress=False)
    return search.lambda_min, len(search.evaluations) * (FOLDS - 1) / FOLDS * FOLDS


def race(loop: Loop, budget: float, race_options: dict) -> tuple[float, float]:
    found = l2optim.select_lambda_fast(
        loop.train, loop.bounds, n_samples=loop.n, epochs=loop.epochs, budget=budget,
        random_state=loop.seed, **race_options,
    )
    return found.lambda_chosen, found.run_equivalents


def _holdout(loop: Loop) -> tuple[np.ndarray, np.ndarray]:
    return l2optim.kfold_splits(loop.n, FOLDS, random_state=loop.seed)[0]


def tpe_with_pruner(loop: Loop, budget: float, race_options: dict) -> tuple[float, float]:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    train_idx, val_idx = _holdout(loop)
    rows_left = budget * loop.epochs * loop.n
    spent = 0.0
    study = optuna.create_study(
        sampler=optuna.samplers.TPESampler(seed=loop.seed, n_startup_trials=3),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=loop.epochs // 4),
    )
    lo, hi = loop.bounds

    def objective(trial):
        nonlocal spent
        score = math.inf
        for epoch, score in enumerate(loop.train(trial.suggest_float("lam", lo, hi, log=True),
                                                 train_idx, val_idx)):
            spent += len(train_idx)
            trial.report(score if math.isfinite(score) else 1e30, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned
        return score if math.isfinite(score) else 1e30

    while spent + len(train_idx) * loop.epochs <= rows_left + 1e-9:
        study.optimize(objective, n_trials=1)
    finished = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = min(finished, key=lambda t: t.value) if finished else study.trials[0]
    return best.params["lam"], spent / (loop.epochs * loop.n)


def grid(loop: Loop, budget: float, race_options: dict) -> tuple[float, float]:
    train_idx, val_idx = _holdout(loop)
    n = max(1, int(budget * loop.n // len(train_idx)))
    lambdas = np.geomspace(*loop.bounds, n)
    scores = [list(loop.train(float(lam), train_idx, val_idx))[-1] for lam in lambdas]
    return float(lambdas[int(np.argmin(scores))]), n * len(train_idx) / loop.n


METHODS = {"full CV": full_cv, "race": race, "TPE+pruner": tpe_with_pruner, "grid": grid}


# --------------------------------------------------------------------------- the table


def run(
    name: str, splits: range, methods: list[str], budget: float, race_options: dict, cache: Cache
) -> None:
    results = {m: {"loss": [], "cost": [], "seconds": [], "ratio": [], "excess": []}
               for m in [*methods, "oracle"]}
    print(f"\n{name}: {FOLDS}-fold CV against the cheap ways at {budget:g} runs, splits {splits}")
    for done, split in enumerate(splits, 1):
        loop = PROBLEMS[name](split)
        entry = cache.entry(name, split)
        tested = entry["test"]

        def test_loss(lam: float, loop: Loop = loop, tested: dict = tested) -> float:
            key = repr(float(lam))
            if key not in tested:
                tested[key] = loop.test_loss(float(lam))
            return tested[key]

        chosen = {}
        for method in ["full CV", *[m for m in methods if m != "full CV"]]:
            start = time.perf_counter()
            if method == "full CV" and "full CV" in entry:
                lam, cost, seconds = entry["full CV"]
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", l2optim.LambdaAtEdgeWarning)
                    lam, cost = METHODS[method](loop, budget, race_options)
                seconds = time.perf_counter() - start
                if method == "full CV":
                    entry["full CV"] = (lam, cost, seconds)
            results[method]["seconds"].append(seconds)
            results[method]["cost"].append(cost)
            chosen[method] = lam
        oracle_grid = np.geomspace(*loop.bounds, ORACLE_GRID)
        at_zero = test_loss(0.0)
        on_grid = np.array([test_loss(float(lam)) for lam in oracle_grid])
        losses = {m: test_loss(float(lam)) for m, lam in chosen.items()}
        cache.save()
        for method, loss in losses.items():
            results[method]["loss"].append(loss)
            results[method]["ratio"].append(chosen[method] / chosen["full CV"])
            results[method]["excess"].append(loss / losses["full CV"] - 1)
        results["oracle"]["loss"].append(on_grid.min())
        for key in ("cost", "seconds", "ratio"):
            results["oracle"][key].append(math.nan)
        results["oracle"]["excess"].append(on_grid.min() / losses["full CV"] - 1)
        matters = at_zero / on_grid.min() - 1
        print(
            f"  split {split}: test loss at λ=0 {at_zero:.4f}, best {on_grid.min():.4f} "
            f"(λ={oracle_grid[np.argmin(on_grid)]:.3g}): λ=0 is {matters:+.0%} "
            f"{'(λ matters)' if matters >= 0.10 else '(BELOW the 10% check)'}; "
            + ", ".join(f"{m} λ={lam:.3g} ({losses[m] / losses['full CV'] - 1:+.1%})"
                        for m, lam in chosen.items())
        )
        print_table(results, done)


def print_table(results: dict, done: int) -> None:
    reference = np.mean(results["full CV"]["loss"])
    print(f"  mean over {done} split{'s' if done > 1 else ''}:")
    print(f"  {'method':<12}{'runs':>7}{'seconds':>9}{'test loss':>11}{'excess':>9}"
          f"{'worst':>8}{'λ/full':>8}")
    for name, row in results.items():
        loss = np.mean(row["loss"])
        ratio = np.nanmedian(row["ratio"]) if not np.isnan(row["ratio"]).all() else math.nan
        print(
            f"  {name:<12}{np.mean(row['cost']):7.2f}{np.mean(row['seconds']):9.1f}"
            f"{loss:11.4f}{loss / reference - 1:+9.2%}{max(row['excess']):+8.1%}{ratio:8.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--first-split", type=int, default=0)
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    parser.add_argument("--methods", default="race,TPE+pruner,grid",
                        help="comma-separated: race, TPE+pruner, grid (full CV always runs)")
    parser.add_argument("--budget", type=float, default=5.0)
    parser.add_argument("--race", default="", help="select_lambda_fast options, e.g. "
                        "'survivors=3,lean=1' (a study of the race's settings)")
    parser.add_argument("--cache", help="a JSON file that keeps full CV's choices and the test "
                        "losses between runs")
    parser.add_argument("--check", action="store_true",
                        help="only time one training and print λ=0 against the best λ")
    args = parser.parse_args()
    torch.set_num_threads(1)
    race_options = race_settings(args.race)
    methods = ["full CV", *filter(None, args.methods.split(","))]
    for name in args.problems.split(","):
        if args.check:
            loop = PROBLEMS[name](args.first_split)
            start = time.perf_counter()
            zero = loop.test_loss(0.0)
            seconds = time.perf_counter() - start
            losses = {lam: loop.test_loss(lam) for lam in np.geomspace(*loop.bounds, 9)}
            best = min(losses, key=losses.get)
            print(f"{name}: one training {seconds:.2f} s; test loss at λ=0 {zero:.4f}, "
                  f"best {losses[best]:.4f} at λ={best:.3g} ({zero / losses[best] - 1:+.0%}); "
                  + " ".join(f"{lam:.2g}:{v:.3f}" for lam, v in losses.items()))
            continue
        run(name, range(args.first_split, args.first_split + args.splits), methods,
            args.budget, race_options, Cache(args.cache))


if __name__ == "__main__":
    main()
