"""How early, and on how few folds, a ranking of λ can be trusted.

Run: ``python benchmarks/selection/lambda_rankings.py`` (``--splits``; the problems of
``lambda_cost.py``). For each data split every λ of a 16-point log grid over the
problem's bounds trains on every one of 5 folds (stacked, with the numbers
``FoldTrainer`` gives) and is scored after every epoch; the final model is trained on
all training rows at each λ and scored on the test rows. Printed:

* ``argmin by epoch``: the grid position (0 = smallest λ) of the best mean CV score
  after a fraction of the epochs, and after all of them;
* ``excess``: the mean test loss at the λ a cheaper rule picks over that at full CV's
  grid choice (all folds, all epochs), minus 1, over the splits, with the rule's cost in
  training runs: the best λ after a fraction r of the epochs on all folds
  (16·5·r·(4/5) runs), and the best λ at all epochs on F of the 5 folds (averaged over
  every subset of F folds; 16·F·(4/5) runs).

These are the measurements behind the race's first rung (a quarter of the epochs) and
its use of every fold. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch
from lambda_cost import FOLDS, PROBLEMS, test_losses

import l2optim
from l2optim.selection import FoldStacks

GRID = 16
FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2)


def curves(problem, split):
    """CV scores (epoch, fold, λ) on the grid and the test losses at each grid λ."""
    x_train, y_train, x_test, y_test, setting = problem.make(split)
    trainer = l2optim.FoldTrainer(X=x_train, y=y_train, seed=split, **setting)
    splits = l2optim.kfold_splits(len(x_train), FOLDS, random_state=split)
    lambdas = np.geomspace(*problem.bounds, GRID)
    runs = FoldStacks(trainer, splits, lambdas)
    scores = np.empty((trainer.epochs, FOLDS, GRID))
    for epoch in range(trainer.epochs):
        runs.train_to(epoch + 1)
        scores[epoch] = runs.scores().T
    test = test_losses(setting, x_train, y_train, x_test, y_test, lambdas, split)
    return scores, test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--problems", default=",".join(PROBLEMS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.problems.split(","):
        problem = PROBLEMS[name]
        tables = [curves(problem, split) for split in range(args.splits)]
        print(f"\n{name}: argmin by epoch fraction {[f'{r:.3g}' for r in FRACTIONS]} and 1")
        for split, (scores, _) in enumerate(tables):
            epochs = len(scores)
            picks = [
                int(np.argmin(scores[max(1, round(r * epochs)) - 1].mean(0))) for r in FRACTIONS
            ]
            print(f"  split {split}: {picks} -> {int(np.argmin(scores[-1].mean(0)))}")
        full = np.mean([test[np.argmin(scores[-1].mean(0))] for scores, test in tables])
        print(f"  {'rule':<28}{'runs':>7}{'excess':>9}")
        for r in FRACTIONS:
            loss = np.mean(
                [
                    test[np.argmin(scores[max(1, round(r * len(scores))) - 1].mean(0))]
                    for scores, test in tables
                ]
            )
            cost = GRID * FOLDS * r * (FOLDS - 1) / FOLDS
            print(f"  {f'all folds, {r:.3g} of the epochs':<28}{cost:7.1f}{loss / full - 1:+9.2%}")
        for kept in range(1, FOLDS):
            losses = []
            for scores, test in tables:
                subsets = itertools.combinations(range(FOLDS), kept)
                losses.append(
                    np.mean([test[np.argmin(scores[-1][list(s)].mean(0))] for s in subsets])
                )
            cost = GRID * kept * (FOLDS - 1) / FOLDS
            print(
                f"  {f'{kept} of {FOLDS} folds, all epochs':<28}{cost:7.1f}{np.mean(losses) / full - 1:+9.2%}"
            )


if __name__ == "__main__":
    main()
