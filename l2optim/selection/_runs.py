"""Runs of the user's own training, raced: a run pauses when the race stops drawing from it.

A *training function* ``train(lam, train_idx, val_idx)`` is the user's loop written as a
generator: it builds a fresh model at weight decay ``lam``, trains on the rows
``train_idx`` an epoch at a time (its DataLoader, augmentation, lr schedule, loss) and
yields the validation score on ``val_idx`` after each epoch. The race draws one score per
epoch it wants trained, stops drawing to pause a run (the schedule goes on where it was
when drawing resumes, nothing restarts), and closes the generators it drops.

:class:`TrainingRuns` are the contestants of a race over such a function: one run per
(λ, fold), held by *hosts*: this process, worker processes (each run stays in the process
that started it), or dask actors (one per worker). :class:`Reported` turns a loop that
reports from inside a framework (a Lightning callback, a 🤗 ``TrainerCallback``) into a
training function.
"""

from __future__ import annotations

import itertools
import math
import multiprocessing
import queue
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any, Protocol

import numpy as np
import torch

from l2optim import _compat

__all__ = [
    "Reported",
    "RunHost",
    "TrainingRuns",
    "hosts_for",
]

#: ``train(lam, train_idx, val_idx)``: a generator of validation scores, one per epoch.
TrainingFunction = Callable[[float, np.ndarray, np.ndarray], Iterator[Any]]


def _as_score(value: Any) -> float:
    """A yielded score as a float: a tensor's value; inf when not finite (diverged)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    score = float(value)
    return score if math.isfinite(score) else math.inf


class NoScoreError(ValueError):
    """A training function's run ended before it yielded any score."""


class _Run:
    """One generator, the score it last yielded and how many it yielded.

    A loop that yields its validation score inside ``with torch.no_grad():`` is paused
    with grad mode off: each run's grad mode is kept with it (restored when it resumes,
    and the caller's put back when it pauses), so that runs paused side by side do not
    leak it into each other.
    """

    def __init__(self, generator: Iterator[Any], lam: float) -> None:
        self.generator = generator
        self.lam = lam
        self.last = math.inf
        self.drawn = 0
        self.done = False  # ended, or diverged: nothing more to draw
        self.grad_enabled = torch.is_grad_enabled()

    def advance(self, epochs: int) -> tuple[float, int]:
        """Draw up to ``epochs`` more scores; (the last score, how many were drawn)."""
        drawn = 0
        caller = torch.is_grad_enabled()
        torch.set_grad_enabled(self.grad_enabled)
        try:
            while drawn < epochs and not self.done:
                try:
                    value = next(self.generator)
                except StopIteration:
                    if self.drawn == 0:
                        raise NoScoreError(
                            f"the training at lambda={self.lam!r} ended without a score: a "
                            "training function must yield the validation score after each "
                            "epoch (a Reported training must call report)"
                        ) from None
                    self.done = True  # a shorter training: its last score stands
                    break
                self.last = _as_score(value)
                drawn += 1
                self.drawn += 1
                self.done = self.last == math.inf
        finally:
            self.grad_enabled = torch.is_grad_enabled()
            torch.set_grad_enabled(caller)
        return self.last, drawn


class RunHost:
    """Holds runs of one training function and draws from them on request.

    In this process, in a worker process, or as a dask actor: wherever it lives, a run
    started there stays there, paused between requests.
    """

    def __init__(self, train: TrainingFunction) -> None:
        self.train = train
        self.runs: dict[int, _Run] = {}

    def start(self, key: int, lam: float, train_idx: np.ndarray, val_idx: np.ndarray) -> None:
        """Start run ``key``: call the training function (its generator draws nothing yet)."""
        try:
            self.runs[key] = _Run(iter(self.train(lam, train_idx, val_idx)), lam)
        except Exception as exc:
            raise RuntimeError(f"the training function raised at lambda={lam!r}") from exc

    def advance(self, key: int, epochs: int) -> tuple[float, int]:
        """Train run ``key`` up to ``epochs`` more epochs: (its score, epochs drawn)."""
        run = self.runs[key]
        try:
            return run.advance(epochs)
        except NoScoreError:
            raise
        except Exception as exc:
            raise RuntimeError(
                f"the training function raised at lambda={run.lam!r}, in epoch "
                f"{run.drawn + 1} of its run"
            ) from exc

    def close(self, keys: Sequence[int]) -> None:
        """End the runs ``keys`` (their generators are closed: ``finally`` blocks run)."""
        for key in keys:
            run = self.runs.pop(key, None)
            if run is not None and hasattr(run.generator, "close"):
                run.generator.close()

    def close_all(self) -> None:
        """End every run held here."""
        self.close(list(self.runs))


# -- hosts ----------------------------------------------------------------------------------


class _Hosts(Protocol):
    """Where runs live: ``call(i, method, *args)`` runs ``RunHost.method`` on host i."""

    size: int

    def call(self, index: int, method: str, *args: Any) -> Any: ...

    def shutdown(self) -> None: ...


class _Done:
    """The result of a call made in this process, shaped as a future's."""

    def __init__(self, function: Callable[[], Any]) -> None:
        try:
            self.value, self.error = function(), None
        except Exception as exc:
            self.value, self.error = None, exc

    def result(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


class _LocalHosts:
    """One host, in this process: runs train one after another."""

    size = 1

    def __init__(self, train: TrainingFunction) -> None:
        self.host = RunHost(train)

    def call(self, index: int, method: str, *args: Any) -> _Done:
        return _Done(lambda: getattr(self.host, method)(*args))

    def shutdown(self) -> None:
        self.host.close_all()


_HOST: RunHost | None = None


def _install(train: TrainingFunction) -> None:
    global _HOST
    torch.set_num_threads(1)  # one process per run at a time: more threads only fight
    _HOST = RunHost(train)


def _on_host(method: str, *args: Any) -> Any:
    assert _HOST is not None
    return getattr(_HOST, method)(*args)


class _ProcessHosts:
    """``workers`` fresh worker processes, each holding the runs it started.

    One single-process pool per worker, so that a run's requests always reach the process
    that holds it. "spawn", one torch thread each, as :func:`l2optim.kfold_objective`'s
    workers; the training function is sent to each worker once.
    """

    def __init__(self, train: TrainingFunction, workers: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pools = [
            ProcessPoolExecutor(1, mp_context=context, initializer=_install, initargs=(train,))
            for _ in range(workers)
        ]
        self.size = workers

    def call(self, index: int, method: str, *args: Any) -> Future:
        return self.pools[index].submit(_on_host, method, *args)

    def shutdown(self) -> None:
        for pool in self.pools:
            pool.shutdown(cancel_futures=True)  # the processes end, and their runs with them


class _DaskHosts:
    """One :class:`RunHost` actor on each worker of a dask cluster."""

    def __init__(self, train: TrainingFunction, client: Any) -> None:
        workers = sorted(client.scheduler_info()["workers"])
        self.actors = [
            client.submit(RunHost, train, actor=True, workers=[address], pure=False).result()
            for address in workers
        ]
        self.size = len(self.actors)

    def call(self, index: int, method: str, *args: Any) -> Any:
        return getattr(self.actors[index], method)(*args)

    def shutdown(self) -> None:
        for call in [actor.close_all() for actor in self.actors]:
            call.result()
        self.actors = []  # released: the cluster drops the actors


def hosts_for(train: TrainingFunction, *, workers: int | None, executor: Any) -> _Hosts:
    """The hosts a race's runs live on: this process, ``workers`` processes, or a dask
    cluster (``executor``: a ``dask.distributed.Client`` or the executor it gives).

    Raises:
        TypeError: ``executor`` is not dask's: a plain executor cannot keep a run in the
            process that started it.
    """
    if executor is not None:
        client = _compat.dask_client_of(executor)
        if client is None:
            raise TypeError(
                "executor must be a dask.distributed.Client (or the executor it gives), whose "
                "actors keep each run where it started; for worker processes give workers=N; "
                f"got {type(executor).__name__}"
            )
        return _DaskHosts(train, client)
    if workers is not None and workers > 1:
        return _ProcessHosts(train, workers)
    return _LocalHosts(train)


# -- the contestants ------------------------------------------------------------------------

_KEYS = itertools.count()


class TrainingRuns:
    """Runs of one training function for some λ on every fold, drawn in lockstep.

    Every run trains at ``λ · train_scale`` (the λ reported stay as given). ``cost`` is
    the rows trained on so far: an epoch drawn from a run costs its training rows.
    """

    def __init__(
        self,
        hosts: _Hosts,
        splits: Sequence[tuple[np.ndarray, np.ndarray]],
        lambdas: Sequence[float],
        train_scale: float = 1.0,
    ) -> None:
        self.hosts = hosts
        self.splits = splits
        self.lambdas = np.asarray([float(v) for v in lambdas])
        self.epochs = 0
        self.cost = 0.0
        self._scores = np.full((len(self.lambdas), len(splits)), math.inf)
        self._warned_short = False
        # (key, host) of the run of (λ i, fold j); runs are spread over the hosts.
        self._runs: list[list[tuple[int, int]]] = []
        calls = []
        for lam in self.lambdas:
            row = []
            for train, val in splits:
                key = next(_KEYS)
                host = key % hosts.size
                calls.append(hosts.call(host, "start", key, float(lam * train_scale), train, val))
                row.append((key, host))
            self._runs.append(row)
        for call in calls:
            call.result()

    def train_to(self, epochs: int) -> None:
        """Draw from every run until it has trained ``epochs`` epochs (in parallel where
        the runs live on several hosts)."""
        more = int(epochs) - self.epochs
        if more <= 0:
            return
        calls = [
            (i, j, self.hosts.call(host, "advance", key, more))
            for i, row in enumerate(self._runs)
            for j, (key, host) in enumerate(row)
        ]
        short = []
        for i, j, call in calls:
            score, drawn = call.result()
            self._scores[i, j] = score
            self.cost += drawn * len(self.splits[j][0])
            if drawn < more and math.isfinite(score):
                short.append(float(self.lambdas[i]))
        if short and not self._warned_short:
            self._warned_short = True
            warnings.warn(
                f"a training ended before the {epochs} epochs the race asked of it (at "
                f"lambda={short[0]!r}, {len(short)} run(s) now): its last score stands, as "
                "under early stopping. If every training is that short, give the race "
                "epochs= its length, or the rungs are not the epochs they name",
                RuntimeWarning,
                stacklevel=2,
            )
        self.epochs = int(epochs)

    def scores(self) -> np.ndarray:
        """The last score of every run, shape (λ, folds); inf for a diverged run."""
        return self._scores.copy()

    def keep(self, index: Sequence[int]) -> None:
        """Keep the λ at positions ``index``, closing the runs of the others."""
        index = [int(i) for i in index]
        dropped = [i for i in range(len(self.lambdas)) if i not in index]
        self._close([self._runs[i] for i in dropped])
        self._runs = [self._runs[i] for i in index]
        self._scores = self._scores[index]
        self.lambdas = self.lambdas[index]

    def close(self) -> None:
        """Close every run still held."""
        self._close(self._runs)
        self._runs = []

    def _close(self, rows: Sequence[Sequence[tuple[int, int]]]) -> None:
        by_host: dict[int, list[int]] = {}
        for row in rows:
            for key, host in row:
                by_host.setdefault(host, []).append(key)
        for call in [self.hosts.call(h, "close", keys) for h, keys in by_host.items()]:
            call.result()


# -- training that reports from inside a framework -----------------------------------------


class _Stop(BaseException):
    """Raised inside a reporting training to end it (a BaseException: frameworks that
    catch Exception let it through)."""


_END = object()


class Reported:
    """A training function made of a loop that reports its scores from inside a framework.

    ``train(lam, train_idx, val_idx, report)`` runs the whole training (a Lightning
    ``Trainer.fit``, a 🤗 ``Trainer.train``) and calls ``report(score)`` after each
    epoch's validation, from a callback. ``Reported(train)`` is a training function: it
    runs ``train`` in a thread of its own, which waits inside ``report`` until the race
    draws the next score, so the framework's loop pauses and continues as a generator
    does; a run the race drops ends inside ``report`` (an exception that ``except
    Exception`` does not catch), so the framework's own ``finally`` blocks run.

    Pickles when ``train`` does (a module-level function), for worker processes.
    """

    def __init__(self, train: Callable[[float, np.ndarray, np.ndarray, Callable[[Any], None]], Any]) -> None:
        self.train = train

    def __call__(self, lam: float, train_idx: np.ndarray, val_idx: np.ndarray) -> Iterator[Any]:
        scores: queue.Queue = queue.Queue(maxsize=1)
        resume: queue.Queue = queue.Queue(maxsize=1)

        def report(score: Any) -> None:
            scores.put(("score", score))
            if resume.get() is _Stop:
                raise _Stop

        def run() -> None:
            try:
                self.train(lam, train_idx, val_idx, report)
            except _Stop:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the race's thread
                scores.put(("error", exc))
                return
            scores.put(("end", None))

        thread = threading.Thread(target=run, name=f"l2optim run at lambda={lam:.3g}", daemon=True)
        started = False
        try:
            thread.start()
            started = True
            while True:
                kind, value = scores.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise value
                yield value
                resume.put(None)
        finally:
            if started and thread.is_alive():
                resume.put(_Stop)
                # The training unwinds from report(); an end it reports after is dropped.
                while thread.is_alive():
                    try:
                        scores.get(timeout=0.05)
                    except queue.Empty:
                        pass
                thread.join()

    def __repr__(self) -> str:
        return f"Reported({self.train!r})"
