"""Small real datasets shipped with l2optim, for demonstrations and examples.

``diabetes.csv``
    The diabetes data of Efron, Hastie, Johnstone & Tibshirani (2004), "Least Angle
    Regression", *Annals of Statistics* 32(2), 407–499: 442 patients, ten baseline
    variables in their original units (``age``, ``sex``, ``bmi`` body mass index, ``bp``
    average blood pressure, and six blood serum measurements ``s1`` … ``s6``) and the
    response ``progression``, a quantitative measure of disease progression one year
    after baseline. One header row, then one patient per row, comma separated.

    The numbers are those of the copy scikit-learn distributes
    (``sklearn/datasets/data/diabetes_data_raw.csv.gz`` and ``diabetes_target.csv.gz``)
    under the BSD-3-Clause licence, copyright the scikit-learn developers; originally
    from https://www4.stat.ncsu.edu/~boos/var.select/diabetes.html.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["DIABETES_TARGET", "Table", "diabetes_csv", "load_diabetes", "read_csv"]

#: The response column of ``diabetes.csv``.
DIABETES_TARGET = "progression"

#: Separators tried when none is given, in this order of preference on a tie.
SEPARATORS = (",", ";", "\t", "|")


def diabetes_csv() -> Path:
    """Path of the shipped ``diabetes.csv`` (442 rows, 10 features and ``progression``)."""
    return Path(str(resources.files(__name__).joinpath("diabetes.csv")))


def load_diabetes() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The diabetes data as float64 arrays, in the units of the original study.

    Returns:
        ``(X, y, feature_names)``: ``X`` of shape (442, 10), ``y`` (disease progression)
        of shape (442,), and the names of the ten columns of ``X``.
    """
    return read_csv(diabetes_csv()).split(DIABETES_TARGET)


@dataclass(frozen=True, eq=False)
class Table:
    """A table of numbers with named columns, as :func:`read_csv` reads it.

    Attributes:
        columns: the column names, in file order.
        values: the numbers, float64 of shape (rows, columns).
        dropped: the columns of the file left out, by name; ``""`` for an unnamed
            first column (the index pandas' ``to_csv`` writes).
    """

    columns: tuple[str, ...]
    values: np.ndarray
    dropped: tuple[str, ...] = ()

    def split(self, target: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """``(X, y, feature_names)``: the column ``target`` as y, the others as X.

        Raises:
            ValueError: no column is named ``target``; the message lists the columns.
        """
        if target not in self.columns:
            raise ValueError(
                f"unknown column {target!r}; the columns are: {', '.join(self.columns)}"
            )
        index = self.columns.index(target)
        features = [i for i in range(len(self.columns)) if i != index]
        return self.values[:, features], self.values[:, index], [self.columns[i] for i in features]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Table):
            return NotImplemented
        return (
            self.columns == other.columns
            and np.array_equal(self.values, other.values)
            and self.dropped == other.dropped
        )

    __hash__ = None  # type: ignore[assignment]


def read_csv(
    path: str | os.PathLike[str], *, sep: str | None = None, drop: Sequence[str] = ()
) -> Table:
    """Read a CSV file of numbers with a header row.

    Blank lines are skipped; a UTF-8 byte-order mark and spaces around column names are
    ignored. Every other field must be a finite number: no missing values. A first
    column without a name is the index that pandas' ``DataFrame.to_csv`` writes: it is
    left out, and listed in the table's ``dropped`` as ``""``.

    Args:
        path: the file.
        sep: the field separator, one character. ``None``: the one of ``,`` ``;`` tab
            ``|`` that splits the header and the first rows into the same number (at
            least two) of fields, the first of them on a tie; ``,`` when none does.
        drop: names of columns to leave out (an identifier, say); they need not hold
            numbers.

    Returns:
        A :class:`Table`.

    Raises:
        FileNotFoundError: no such file.
        TypeError: ``sep`` not a string.
        ValueError: what is wrong and where: a file that is not UTF-8 text or is empty,
            a header with fewer than two columns (with the separator it seems to use,
            when that is another), an empty column name other than the first, a
            repeated column name, a column to drop that the file does not have, no data
            rows, a row of another length, a field that is not a finite number (its
            column, row and line).
    """
    path = Path(path)
    if sep is not None and not isinstance(sep, str):
        raise TypeError(f"sep must be a string of one character or None, got {sep!r}")
    if sep is not None and len(sep) != 1:
        raise ValueError(f"sep must be one character, got {sep!r}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text file") from None
    lines = text.splitlines()
    if sep is None:
        sep = _separator(lines)
    try:
        rows = [(line, row) for line, row in _numbered_rows(lines, sep) if row]
    except csv.Error as exc:
        raise ValueError(f"{path}: cannot read it: {exc}") from None
    if not rows:
        raise ValueError(f"{path}: the file is empty")
    (_, header), body = rows[0], rows[1:]
    header = [name.strip() for name in header]
    if isinstance(drop, str):
        drop = (drop,)
    unknown = [name for name in drop if name not in header]
    if unknown:
        raise ValueError(
            f"{path}: no column {unknown[0]!r} to drop; the columns are: {', '.join(header)}"
        )
    dropped = {i for i, name in enumerate(header) if name in drop or (i == 0 and not name)}
    kept = [i for i in range(len(header)) if i not in dropped]
    _check_header(path, [header[i] for i in kept], sep)
    if not body:
        raise ValueError(f"{path}: a header row but no data rows")
    values = np.empty((len(body), len(kept)))
    for row_number, (line, row) in enumerate(body, start=1):
        if len(row) != len(header):
            raise ValueError(
                f"{path}: row {row_number} (line {line}) has {len(row)} fields, "
                f"the header has {len(header)}"
            )
        for column, i in enumerate(kept):
            where = f"{path}: column {header[i]!r}, row {row_number} (line {line})"
            values[row_number - 1, column] = _number(where, row[i])
    return Table(
        tuple(header[i] for i in kept), values, tuple(header[i] for i in sorted(dropped))
    )


def _numbered_rows(lines: list[str], sep: str) -> Iterator[tuple[int, list[str]]]:
    """(line number where the row ends, row) for each row of the file."""
    reader = csv.reader(lines, delimiter=sep)
    for row in reader:
        yield reader.line_num, row


def _separator(lines: list[str]) -> str:
    """The separator that cuts the first rows into equally many fields, most of them."""
    sample = [line for line in lines if line.strip()][:20]
    best, best_width = ",", 1
    for candidate in SEPARATORS:
        widths = {len(row) for row in csv.reader(sample, delimiter=candidate)}
        if len(widths) == 1 and (width := widths.pop()) > best_width:
            best, best_width = candidate, width
    return best


def _check_header(path: Path, header: list[str], sep: str) -> None:
    if len(header) < 2:
        message = f"{path}: needs a target and at least one feature column, got {header}"
        other = [s for s in SEPARATORS if s != sep and header and s in header[0]]
        if other:
            message += f"; the header looks separated by {other[0]!r}: give sep={other[0]!r}"
        raise ValueError(message)
    seen: set[str] = set()
    for name in header:
        if not name:
            raise ValueError(
                f"{path}: the header has an empty column name (only the first column, "
                "a pandas index, may have none)"
            )
        if name in seen:
            raise ValueError(f"{path}: column {name!r} appears twice in the header")
        seen.add(name)


def _number(where: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        if not text.strip():
            raise ValueError(f"{where} is empty; missing values are not supported") from None
        raise ValueError(f"{where}: {text.strip()!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: {text.strip()!r} is not a finite number")
    return value
