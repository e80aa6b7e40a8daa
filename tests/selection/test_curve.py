"""The CV curve's views: a one-line repr, a summary table and a DataFrame of every point."""

from __future__ import annotations

import math

import numpy as np
import pytest

import l2optim


@pytest.fixture(scope="module")
def search() -> l2optim.LambdaSearch:
    # Three "folds" that disagree a little: a curve with standard errors and a λ_1se.
    def objective(lam: float) -> tuple[float, ...]:
        base = (math.log10(lam) + 3) ** 2
        return (base + 1.0, base + 1.2, base + 0.9)

    return l2optim.select_lambda(objective, bounds=(1e-6, 1.0), progress=False)


@pytest.fixture(scope="module")
def ridge() -> l2optim.RidgeCVResult:
    X, y, _ = l2optim.data.load_diabetes()
    return l2optim.ridge_cv(X, y, cv=5, standardize=True)


def test_repr_is_one_short_line_of_the_choices(search, ridge):
    for curve in (search, ridge):
        text = repr(curve)
        assert "\n" not in text and len(text) < 200 and "array" not in text
        assert text.startswith(f"{type(curve).__name__}(lambda_min={curve.lambda_min:.3g}, ")
        assert f"{len(curve.lambdas)} λ evaluated" in text
        assert str(curve) == text


def test_summary_shows_each_choice_once_and_no_crowded_points(ridge):
    lines = ridge.summary().splitlines()
    assert lines[0] == repr(ridge)
    rows = lines[2:-1]
    lambdas = np.array([float(row.split()[0]) for row in rows])
    # The ends, each choice once, and the grid: nothing within 0.2 decades of another.
    assert lambdas[[0, -1]] == pytest.approx(ridge.lambdas[[0, -1]], rel=1e-4)
    assert np.diff(np.log10(lambdas)).min() >= 0.15
    assert sum(row.endswith("<- lambda_min") for row in rows) == 1
    assert sum(row.endswith("<- lambda_1se") for row in rows) == 1
    assert len(rows) < len(ridge.lambdas)
    assert len(ridge.summary(every_point=True).splitlines()) == len(ridge.lambdas) + 3
    assert ridge.summary(title=False).splitlines()[0].split() == ["lambda", "cv_mean", "se"]


def test_summary_ends_with_the_gain_over_the_smallest_lambda(ridge):
    best = ridge.cv_mean[ridge.lambdas == ridge.lambda_min][0]
    gain = 1 - best / ridge.cv_mean[0]
    assert ridge.gain_over_smallest() == pytest.approx(gain)
    assert ridge.summary().splitlines()[-1].startswith(
        f"at lambda_min the mean is {100 * gain:.3g}% below its value at the smallest λ"
    )


def test_to_dataframe_holds_every_point_and_each_fold(search):
    pd = pytest.importorskip("pandas")
    frame = search.to_dataframe()
    assert isinstance(frame, pd.DataFrame) and len(frame) == len(search.lambdas)
    np.testing.assert_array_equal(frame["lambda"], search.lambdas)
    np.testing.assert_array_equal(frame["cv_mean"], search.cv_mean)
    np.testing.assert_array_equal(frame["cv_se"], search.cv_se)
    assert frame.loc[frame["is_lambda_min"], "lambda"].tolist() == [search.lambda_min]
    assert frame.loc[frame["is_lambda_1se"], "lambda"].tolist() == [search.lambda_1se]
    by_lambda = {e.lam: e.scores for e in search.evaluations}
    for j in range(3):
        assert frame[f"split{j}_score"].tolist() == [by_lambda[lam][j] for lam in frame["lambda"]]
