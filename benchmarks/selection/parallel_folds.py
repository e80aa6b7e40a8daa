"""Folds on worker processes against folds in turn: the speed-up of a k-fold λ objective.

The objective is CPU-bound: :class:`l2optim.FoldTrainer` training a small MLP with
``l2optim.AdamW`` on each fold, one torch thread per process. Both ways run the same
folds at the same λ values in one run of this script and must give identical scores;
the pool is started and warmed (torch imported, first optimizer built) before timing,
as it is once per search, not once per λ; serial and parallel runs alternate, and each
keeps its best time.

Run: ``python benchmarks/selection/parallel_folds.py`` (target: speed-up ≥ 1.8 with 2 workers).
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import os
import time
from concurrent.futures import Executor, ProcessPoolExecutor

import numpy as np
import torch
from torch import nn

import l2optim


def mlp(n_features: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(n_features, hidden), nn.Tanh(), nn.Linear(hidden, 1))


def make_trainer(n_samples: int, n_features: int, epochs: int) -> l2optim.FoldTrainer:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_samples, n_features)).astype(np.float32)
    y = (np.sin(X[:, 0]) + X[:, 1] * X[:, 2] + 0.1 * rng.normal(size=n_samples)).astype(np.float32)
    return l2optim.FoldTrainer(
        functools.partial(mlp, n_features, 64),
        X,
        y,
        optimizer=l2optim.AdamW,
        optimizer_kwargs={"lr": 1e-2},
        epochs=epochs,
        batch_size=64,
    )


def timed_scores(
    trainer: l2optim.FoldTrainer,
    n_samples: int,
    folds: int,
    lambdas: list[float],
    executor: Executor | None,
) -> tuple[float, list[tuple[float, ...]]]:
    objective = l2optim.kfold_objective(trainer, n_samples, folds=folds, executor=executor)
    start = time.perf_counter()
    scores = [objective(lam) for lam in lambdas]
    return time.perf_counter() - start, scores


def warm_up(pool: Executor, workers: int, n_features: int) -> None:
    """Start every worker and pay its one-off costs (imports, first optimizer) untimed."""
    tiny = make_trainer(4 * workers, n_features, epochs=1)
    l2optim.kfold_objective(tiny, 4 * workers, folds=2 * workers, executor=pool)(1e-3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lambdas", type=float, nargs="+", default=[1e-4, 1e-2])
    args = parser.parse_args()

    torch.set_num_threads(1)
    trainer = make_trainer(args.samples, args.features, args.epochs)
    run = functools.partial(timed_scores, trainer, args.samples, args.folds, args.lambdas)
    timed_scores(make_trainer(8, args.features, 1), 8, 2, [1e-3], None)  # this process's warm-up

    pool_started = time.perf_counter()
    with ProcessPoolExecutor(
        args.workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=torch.set_num_threads,
        initargs=(1,),
    ) as pool:
        warm_up(pool, args.workers, args.features)
        startup_seconds = time.perf_counter() - pool_started
        # Alternate the two and keep each one's best time: a shared machine's other load
        # then weighs on both alike.
        serial_times, parallel_times = [], []
        for _ in range(args.repeats):
            seconds, serial_scores = run(None)
            serial_times.append(seconds)
            seconds, parallel_scores = run(pool)
            parallel_times.append(seconds)
    serial_seconds, parallel_seconds = min(serial_times), min(parallel_times)

    assert parallel_scores == serial_scores, "worker processes changed the scores"
    fits = args.folds * len(args.lambdas)
    print(
        f"{fits} fold fits ({args.folds} folds x {len(args.lambdas)} lambdas), "
        f"MLP on {args.samples}x{args.features}, {args.epochs} epochs, "
        f"1 torch thread per process, {os.cpu_count()} CPUs visible"
    )
    print(f"serial:              {serial_seconds:8.2f} s  (best of {args.repeats})")
    print(
        f"{args.workers} worker processes:  {parallel_seconds:8.2f} s  "
        f"(+ {startup_seconds:.2f} s to start and warm the pool, once per search)"
    )
    print(
        f"speed-up: {serial_seconds / parallel_seconds:.2f}x (target >= 1.8x); "
        f"with pool start-up: {serial_seconds / (parallel_seconds + startup_seconds):.2f}x"
    )
    print("scores identical: True")


if __name__ == "__main__":
    main()
