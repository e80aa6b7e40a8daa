"""K-fold cross-validation objectives whose folds run on any executor."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any

import numpy as np
import torch

from l2optim import _compat
from l2optim._validation import check_bool, check_callable, check_count, check_random_state
from l2optim.selection._trainer import FoldTrainer

__all__ = ["KFoldObjective", "kfold_objective", "kfold_splits"]

#: ``fit_score(lam, train_idx, test_idx) -> float``: train with strength ``lam`` on the
#: samples ``train_idx``, return the validation loss on ``test_idx`` (lower is better).
FitScore = Callable[[float, np.ndarray, np.ndarray], float]


def kfold_splits(
    n_samples: int, folds: int = 5, *, shuffle: bool = True, random_state: int | None = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split ``range(n_samples)`` into ``folds`` (train, test) index pairs.

    The test sets partition the samples; their sizes differ by at most one, the first
    ``n_samples % folds`` folds holding the extra sample (as scikit-learn's ``KFold``).
    Each train set is the complement of its test set; both are sorted.

    Args:
        n_samples: how many samples there are.
        folds: how many folds, 2 ≤ folds ≤ n_samples.
        shuffle: assign samples to folds at random (otherwise in contiguous blocks).
        random_state: seed of the shuffle; the same seed gives the same folds.

    Raises:
        TypeError: ``folds`` or ``n_samples`` not an integer.
        ValueError: ``folds`` or ``n_samples`` out of range.
    """
    n_samples = check_count("n_samples", n_samples, low=1)
    folds = check_count("folds", folds, low=2, high=n_samples, high_name="n_samples")
    check_random_state("random_state", random_state)
    order = np.arange(n_samples)
    if check_bool("shuffle", shuffle):
        order = np.random.default_rng(random_state).permutation(n_samples)
    splits = []
    for test in np.array_split(order, folds):
        in_test = np.zeros(n_samples, dtype=bool)
        in_test[test] = True
        splits.append((np.flatnonzero(~in_test), np.flatnonzero(in_test)))
    return splits


class KFoldObjective:
    """``objective(lam)``: the per-fold validation losses of ``fit_score`` at ``lam``.

    Made by :func:`kfold_objective`; see there. Calling it submits one task per fold to
    the executor (or runs them in turn without one) and returns the scores in fold
    order, as a tuple of floats.

    On a dask.distributed cluster (a ``Client``, or ``client.get_executor()``),
    ``fit_score`` and the data it holds are sent to every worker once, on the first call, and each fold task
    refers to that copy: a search of many λ does not ship the data again for each fold.
    The copy stays on the cluster while the objective lives. Any other executor receives
    ``fit_score`` with every fold task.

    Made with ``workers=N``, it owns a process pool, started on the first call and shut
    down by :meth:`close` (or on leaving a ``with`` block); ``executor`` is then that pool
    while it runs.

    It pickles (so it can itself be shipped to a worker), provided ``fit_score`` does;
    an executor does not travel between processes, so an unpickled copy runs its folds
    serially.
    """

    def __init__(
        self,
        fit_score: FitScore,
        splits: list[tuple[np.ndarray, np.ndarray]],
        executor: Executor | None = None,
        workers: int | None = None,
    ) -> None:
        self.fit_score = fit_score
        self.splits = splits
        self.executor = executor
        # With workers, the pool this objective starts and shuts down itself.
        self.workers = workers
        # fit_score on the workers of a dask cluster, once the first call has sent it.
        self._scattered: Any = None

    def __enter__(self) -> KFoldObjective:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Shut down the process pool started for ``workers`` (a given executor is left
        alone); a later call starts a new one."""
        if self.workers is not None and self.executor is not None:
            self.executor.shutdown(cancel_futures=True)
            self.executor = None

    def _pool(self) -> Executor | None:
        if self.workers is not None and self.executor is None:
            self.executor = worker_pool(self.workers)
        return self.executor

    def default_bounds(self) -> tuple[float, float] | None:
        """``fit_score.default_bounds(n_train)`` for the largest training fold, when
        ``fit_score`` proposes bounds (a :class:`l2optim.FoldTrainer` does); else None."""
        propose = getattr(self.fit_score, "default_bounds", None)
        if not callable(propose):
            return None
        return propose(max(len(train) for train, _ in self.splits))

    def fit(self, lam: float) -> Any:
        """``fit_score.fit(lam)``: the model trained at ``lam`` on every sample."""
        fit = getattr(self.fit_score, "fit", None)
        if not callable(fit):
            raise TypeError(
                f"fit_score has no fit(lam) method to train on every sample: {self.fit_score!r}"
            )
        return fit(lam)

    @property
    def folds(self) -> int:
        """How many folds (= how many scores a call returns)."""
        return len(self.splits)

    def __call__(self, lam: float) -> tuple[float, ...]:
        lam = float(lam)
        executor = self._pool()
        if executor is None:
            return tuple(float(self.fit_score(lam, train, test)) for train, test in self.splits)
        futures = [self._submit(executor, lam, train, test) for train, test in self.splits]
        try:
            return tuple(float(future.result()) for future in futures)
        finally:
            # A failed fold leaves no orphaned work behind on the executor.
            for future in futures:
                future.cancel()

    def _submit(
        self, executor: Executor, lam: float, train: np.ndarray, test: np.ndarray
    ) -> Future:
        """One fold as a task of ``executor``; on dask, ``fit_score`` goes to the workers once."""
        client = _compat.dask_client_of(executor)
        if client is None:
            return executor.submit(self.fit_score, lam, train, test)
        if self._scattered is None:
            # In a list of one: scatter takes a bare sequence or dict as many items. No
            # hashing: dask would pickle the whole data to name it.
            [self._scattered] = client.scatter([self.fit_score], broadcast=True, hash=False)
        # dask hands each task the workers' copy in place of the future.
        return client.submit(_call, self._scattered, lam, train, test, pure=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "executor": None, "workers": None, "_scattered": None}

    def __repr__(self) -> str:
        return (
            f"KFoldObjective(fit_score={self.fit_score!r}, folds={self.folds}, "
            f"executor={self.executor!r})"
        )


def kfold_objective(
    fit_score: FitScore,
    n_samples: int,
    *,
    folds: int = 5,
    shuffle: bool = True,
    random_state: int | None = 0,
    workers: int | None = None,
    executor: Executor | None = None,
) -> KFoldObjective:
    r"""Turn "train on these samples, score on those" into a k-fold CV objective of λ.

    The returned ``objective(lam)`` gives the k validation losses
    :math:`(s_1(\lambda), \dots, s_k(\lambda))`, one per fold, which is what
    :func:`l2optim.select_lambda` takes to compute the CV mean
    :math:`\bar s(\lambda) = \frac1k \sum_j s_j(\lambda)`, its standard error and the
    one-standard-error rule. Every λ uses the same folds.

    Args:
        fit_score: ``fit_score(lam, train_idx, test_idx) -> float``, called once per fold
            with integer numpy index arrays; it trains on ``train_idx`` with strength
            ``lam`` and returns the validation loss on ``test_idx``. With an executor it
            runs in other processes, so it must pickle: a module-level function, a
            :func:`functools.partial` of one, or an instance of a module-level class
            such as :class:`l2optim.FoldTrainer` (dask's executor also takes closures).
        n_samples: how many samples the indices refer to.
        folds: k, with 2 ≤ k ≤ n_samples.
        shuffle: assign samples to folds at random (otherwise in contiguous blocks).
        random_state: seed of that shuffle.
        workers: run the folds of one λ in this many worker processes, each a fresh
            interpreter (the "spawn" start method) running torch on one thread — more
            threads per worker only fight over the cores (one search took 17 times
            longer so). The pool starts on the first call and is shut down by
            :meth:`KFoldObjective.close`; use the objective in a ``with`` block. The
            workers import ``fit_score`` by its module and name: define it (and the
            model factory) in a module, or at the top of the script with the search under
            ``if __name__ == "__main__":``.
        executor: instead of ``workers``, any :class:`concurrent.futures.Executor` to
            run the folds of one λ concurrently: a
            :class:`~concurrent.futures.ProcessPoolExecutor` set up as you need, or a
            ``dask.distributed.Client`` for a cluster (or the executor it gives,
            ``client.get_executor()``), whose workers receive ``fit_score`` and its data
            once rather than with every fold. The executor is the caller's: it is not
            shut down here. With neither, the folds run in turn
            in this process.

    Returns:
        A :class:`KFoldObjective`.

    Example:
        >>> X, y, _ = l2optim.data.load_diabetes()
        >>> trainer = l2optim.FoldTrainer(torch.nn.Linear(10, 1), X, y, standardize=True,
        ...                               optimizer_kwargs={"lr": 0.1}, epochs=20)
        >>> with l2optim.kfold_objective(trainer, len(y), folds=5, workers=2) as objective:
        ...     search = l2optim.select_lambda(objective)
        >>> len(search.evaluations[0].scores)  # one validation loss per fold
        5
    """
    check_callable("fit_score", fit_score)
    if not (
        executor is None
        or isinstance(executor, Executor)  # dask's ClientExecutor is one too
        or _compat.dask_client_of(executor) is not None
    ):
        raise TypeError(
            "executor must be a concurrent.futures.Executor, a dask.distributed.Client or "
            f"None, got {type(executor).__name__}"
        )
    if workers is not None:
        workers = check_count("workers", workers, low=1)
        if executor is not None:
            raise ValueError("give either workers or executor, not both")
    if isinstance(fit_score, FoldTrainer) and n_samples != len(fit_score.X):
        raise ValueError(
            f"n_samples={n_samples!r} differs from the {len(fit_score.X)} rows of "
            "FoldTrainer's X: the folds would leave rows out or index past them"
        )
    splits = kfold_splits(n_samples, folds, shuffle=shuffle, random_state=random_state)
    return KFoldObjective(fit_score, splits, executor, workers)


def worker_pool(workers: int) -> ProcessPoolExecutor:
    """A process pool for CPU-bound training: fresh interpreters, one torch thread each.

    "spawn" rather than fork: a forked worker inherits whatever threads and locks this
    process holds (torch's thread pool among them).
    """
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=torch.set_num_threads,
        initargs=(1,),
    )


def _call(fit_score: FitScore, lam: float, train: np.ndarray, test: np.ndarray) -> float:
    """``fit_score`` on one fold, for a task that receives ``fit_score`` as an argument."""
    return fit_score(lam, train, test)
