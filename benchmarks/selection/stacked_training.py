"""Training m (fold, λ) runs as one stacked model against training them one at a time.

Run: ``python benchmarks/selection/stacked_training.py``. The model and data are the command
line's ``--demo --model mlp`` (diabetes, one hidden layer of 32 tanh units, batches of
64, 30 epochs) with ``l2optim.AdamW`` (lr 1e-2). For m runs (m λ on the first fold of a
5-fold split) it times ``FoldTrainer`` called m times and one ``ModelStack`` of m
copies, side by side in one process with one torch thread, and checks that the scores
agree. The ratio is the wall time of the m single runs over the stack's; nothing is
asserted.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import torch
from torch import nn

import l2optim
from l2optim.selection import ModelStack

REPEATS = 3


def mlp(n_features: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, 1))


def best_time(work) -> tuple[float, object]:
    times, result = [], None
    for _ in range(REPEATS):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    torch.set_num_threads(1)
    X, y, _ = l2optim.data.load_diabetes()
    X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
    y = ((y - y.mean()) / y.std()).astype(np.float32)
    trainer = l2optim.FoldTrainer(
        functools.partial(mlp, X.shape[1], 32),
        X,
        y,
        optimizer=l2optim.AdamW,
        optimizer_kwargs={"lr": 1e-2},
        epochs=30,
        batch_size=64,
    )
    splits = l2optim.kfold_splits(len(y), 5)
    print("runs  one at a time (s)  stacked (s)  ratio  max |score difference| / score")
    for m in (1, 4, 16, 64):
        lambdas = np.geomspace(1e-4, 0.9, m)

        def one_at_a_time(lambdas=lambdas):
            return np.array([trainer(lam, *splits[0]) for lam in lambdas])

        def stacked(lambdas=lambdas):
            stack = ModelStack(trainer, splits, [0] * len(lambdas), lambdas)
            stack.train(trainer.epochs)
            return stack.scores()

        single, expected = best_time(one_at_a_time)
        together, got = best_time(stacked)
        error = np.max(np.abs(got / expected - 1))
        print(f"{m:4d}  {single:18.2f}  {together:11.2f}  {single / together:5.1f}  {error:.1e}")


if __name__ == "__main__":
    main()
