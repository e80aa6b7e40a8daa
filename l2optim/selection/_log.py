"""The resumable log of a λ search: one JSON line per finished evaluation.

Each line is ``{"lam": ..., "scores": [...], "seconds": ...}`` (and ``"cost"`` when the
evaluation has one), written, flushed and synced to disk before the search goes on, so a
search that is killed loses at most the evaluation it was running. Strict JSON has no NaN
or infinity: those scores are written as the strings ``"nan"``, ``"inf"``, ``"-inf"``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import IO

from l2optim.selection._curve import Evaluation

__all__ = ["LogWriter", "read_log"]

_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _encode_score(value: float) -> float | str:
    return value if math.isfinite(value) else repr(value)


def _decode_score(value: float | str) -> float:
    return _NON_FINITE[value] if isinstance(value, str) else float(value)


def read_log(path: Path) -> dict[float, Evaluation]:
    """The evaluations recorded in a log, keyed by λ; none when the file does not exist.

    A line cut short (the process was killed while writing it) is skipped.
    """
    found: dict[float, Evaluation] = {}
    if not path.exists():
        return found
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                record = json.loads(line)
                scores = [_decode_score(s) for s in record["scores"]]
                found[float(record["lam"])] = Evaluation.from_scores(
                    record["lam"], scores, record["seconds"], record.get("cost")
                )
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
    return found


class LogWriter:
    """Appends one JSON line per evaluation and forces it to disk before going on."""

    def __init__(self, path: Path) -> None:
        self._file: IO[str] = path.open("a+", encoding="utf-8")
        self._file.seek(0, os.SEEK_END)
        if self._file.tell() > 0:
            self._file.seek(self._file.tell() - 1)
            if self._file.read(1) != "\n":  # a line cut short by a kill: end it
                self._file.write("\n")

    def write(self, evaluation: Evaluation) -> None:
        record: dict[str, object] = {
            "lam": evaluation.lam,
            "scores": [_encode_score(s) for s in evaluation.scores],
            "seconds": evaluation.seconds,
        }
        if evaluation.cost is not None:
            record["cost"] = evaluation.cost
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()
