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

from importlib import resources
from pathlib import Path

import numpy as np

__all__ = ["DIABETES_TARGET", "diabetes_csv", "load_diabetes"]

#: The response column of ``diabetes.csv``.
DIABETES_TARGET = "progression"


def diabetes_csv() -> Path:
    """Path of the shipped ``diabetes.csv`` (442 rows, 10 features and ``progression``)."""
    return Path(str(resources.files(__name__).joinpath("diabetes.csv")))


def load_diabetes() -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The diabetes data as float64 arrays, in the units of the original study.

    Returns:
        ``(X, y, feature_names)``: ``X`` of shape (442, 10), ``y`` (disease progression)
        of shape (442,), and the names of the ten columns of ``X``.
    """
    path = diabetes_csv()
    with path.open() as file:
        names = file.readline().strip().split(",")
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.float64)
    target = names.index(DIABETES_TARGET)
    features = [i for i in range(len(names)) if i != target]
    return table[:, features], table[:, target], [names[i] for i in features]
