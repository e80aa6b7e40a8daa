"""select_lambda and the shared search: grid then Brent, 1-SE rule, log, errors, plot."""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from _profiles import examples
from hypothesis import given, settings
from hypothesis import strategies as st

import l2optim
from l2optim.selection._curve import one_standard_error_lambda
from l2optim.selection._log import read_log
from l2optim.selection._search import grid_then_brent

REPO = Path(__file__).resolve().parents[2]


def bowl(centre: float):
    """A smooth, asymmetric bowl in ln λ with its minimum at ``centre``; five 'folds'."""

    def objective(lam: float) -> list[float]:
        x = math.log(lam / centre)
        return [x * x + 0.2 * x**3 / (1 + x * x) + 0.05 * j for j in range(5)]

    return objective


class CountingObjective:
    """Records every λ it is called with."""

    def __init__(self, objective):
        self.objective = objective
        self.calls: list[float] = []

    def __call__(self, lam: float):
        self.calls.append(lam)
        return self.objective(lam)


# --------------------------------------------------------------------------- the search


@settings(max_examples=examples(30))
@given(log10_centre=st.floats(-5.5, -0.5), n_grid=st.integers(3, 12))
def test_brent_finds_the_continuous_optimum_between_grid_points(log10_centre, n_grid):
    centre = 10.0**log10_centre
    seen: dict[float, float] = {}

    def score(lam: float) -> float:
        x = math.log(lam / centre)
        seen[lam] = x * x + 0.2 * x**3 / (1 + x * x)
        return seen[lam]

    bounds = (1e-6, 1.0)
    found = grid_then_brent(score, bounds, n_grid=n_grid, xtol=1e-3)
    grid = np.geomspace(*bounds, n_grid)
    best = int(np.argmin([seen[g] for g in grid]))
    # Inside the bracket of the best grid point, and no worse than any grid point.
    assert grid[max(best - 1, 0)] <= found <= grid[min(best + 1, n_grid - 1)]
    assert seen[found] <= min(seen[g] for g in grid)
    # The true minimiser of x² + 0.2x³/(1+x²) is x = 0: λ = centre, to about xtol.
    assert abs(math.log(found / centre)) < 5e-3


def test_select_lambda_on_a_known_smooth_objective():
    objective = CountingObjective(bowl(2.5e-3))
    search = l2optim.select_lambda(objective, se_fraction=None, progress=False)
    assert search.lambda_min == pytest.approx(2.5e-3, rel=0.02)
    assert len(search.evaluations) == len(objective.calls) == len(set(objective.calls))
    assert [e.lam for e in search.evaluations] == objective.calls
    grid = np.geomspace(1e-6, 1.0, 7)
    assert not np.isin(search.lambda_min, grid)
    first = search.evaluations[0]
    assert first.scores == tuple(bowl(2.5e-3)(first.lam))
    assert first.mean == pytest.approx(np.mean(first.scores))
    assert first.se == pytest.approx(np.std(first.scores, ddof=1) / math.sqrt(5))
    assert first.seconds >= 0
    # The 1-SE rule applied to the evaluations the search made.
    expected = one_standard_error_lambda(
        [e.lam for e in search.evaluations],
        [e.mean for e in search.evaluations],
        [e.se for e in search.evaluations],
    )
    assert search.lambda_1se == expected
    assert search.lambda_1se > search.lambda_min


def test_single_scores_have_no_lambda_1se():
    search = l2optim.select_lambda(lambda lam: (math.log10(lam) + 3) ** 2, progress=False)
    assert search.lambda_min == pytest.approx(1e-3, rel=0.01)
    assert search.lambda_1se is None
    assert all(e.se is None for e in search.evaluations)


def test_objective_may_return_arrays_and_tensors():
    import torch

    search = l2optim.select_lambda(
        lambda lam: torch.tensor(bowl(1e-2)(lam), requires_grad=True), progress=False
    )
    assert search.lambda_min == pytest.approx(1e-2, rel=0.02)
    assert len(search.evaluations[0].scores) == 5


# --------------------------------------------------------------------------- the 1-SE rule


def test_one_standard_error_rule_on_a_hand_made_curve():
    lambdas = [0.01, 0.1, 1.0, 10.0, 100.0]
    means = [5.0, 3.0, 2.0, 2.5, 2.7]
    ses = [0.1, 0.1, 0.6, 0.1, 0.1]
    # min 2.0 at λ=1 with SE 0.6: threshold 2.6; λ=10 (2.5) is in, λ=100 (2.7) is out.
    assert one_standard_error_lambda(lambdas, means, ses) == 10.0
    assert one_standard_error_lambda(lambdas, means, [0.1, 0.1, 0.8, 0.1, 0.1]) == 100.0
    assert one_standard_error_lambda(lambdas, means, [0.1, 0.1, 0.0, 0.1, 0.1]) == 1.0
    # Order does not matter, non-finite means never qualify.
    assert one_standard_error_lambda(lambdas[::-1], means[::-1], ses[::-1]) == 10.0
    assert one_standard_error_lambda(lambdas + [1e3], means + [math.inf], ses + [0.1]) == 10.0
    assert one_standard_error_lambda(lambdas, means, [None] * 5) is None


# --------------------------------------------------------------------------- failures


def test_non_finite_scores_count_as_infinity_and_the_search_goes_on():
    def diverges_outside(lam: float) -> list[float]:
        if lam > 0.05:
            return [math.nan] * 5
        if lam < 1e-5:
            return [1.0, math.inf, 1.0, 1.0, 1.0]
        return bowl(1e-3)(lam)

    search = l2optim.select_lambda(diverges_outside, progress=False)
    assert search.lambda_min == pytest.approx(1e-3, rel=0.02)
    bad = [e for e in search.evaluations if e.lam > 0.05 or e.lam < 1e-5]
    assert bad and all(e.mean == math.inf for e in bad)


def test_every_grid_point_non_finite_is_an_error():
    with pytest.raises(ValueError, match="non-finite"):
        l2optim.select_lambda(lambda lam: math.nan, progress=False)


def test_exception_names_lambda_and_keeps_finished_evaluations(tmp_path):
    log = tmp_path / "search.jsonl"
    calls = []

    def fails_on_fourth(lam: float) -> float:
        calls.append(lam)
        if len(calls) == 4:
            raise FloatingPointError("training diverged")
        return (math.log10(lam) + 3) ** 2

    with pytest.raises(l2optim.ObjectiveError, match="raised at lambda=") as info:
        l2optim.select_lambda(fails_on_fourth, log=log, progress=False)
    assert repr(calls[3]) in str(info.value)
    assert info.value.lam == calls[3]
    assert isinstance(info.value.__cause__, FloatingPointError)
    assert [e.lam for e in info.value.evaluations] == calls[:3]
    assert sorted(read_log(log)) == sorted(calls[:3])


def test_the_error_crosses_a_process_boundary_whole():
    """Pickled (as a process pool returns it), it keeps λ, the message and the evaluations."""
    done = (l2optim.Evaluation.from_scores(0.5, (1.0, 2.0), 0.1),)
    error = pickle.loads(pickle.dumps(l2optim.ObjectiveError(0.25, done)))
    assert error.lam == 0.25 and error.evaluations == done
    assert str(error) == "the objective raised at lambda=0.25"


def test_an_objective_that_returns_nothing_is_told_so():
    def forgot_its_return(lam: float) -> None:
        (math.log10(lam) + 3) ** 2

    with pytest.raises(l2optim.ObjectiveError) as info:
        l2optim.select_lambda(forgot_its_return, progress=False)
    assert "returned None" in str(info.value.__cause__)
    assert "return` missing" in str(info.value.__cause__)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bounds": (1.0, 1e-3)}, "bounds"),
        ({"bounds": (0.0, 1.0)}, "bounds"),
        ({"bounds": (1e-3, math.inf)}, "bounds"),
        ({"bounds": (1e-3,)}, "bounds"),
        ({"bounds": "ab"}, "bounds"),
        ({"n_grid": 2}, "n_grid"),
        ({"n_grid": 5.5}, "n_grid"),
        ({"xtol": 0.0}, "xtol"),
        ({"xtol": math.nan}, "xtol"),
        ({"se_fraction": -0.1}, "se_fraction"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    # Before any evaluation; the type of the error is test_validation's business.
    objective = CountingObjective(bowl(1e-3))
    with pytest.raises((ValueError, TypeError), match=match):
        l2optim.select_lambda(objective, progress=False, **kwargs)
    assert objective.calls == []


def test_objective_must_be_callable():
    with pytest.raises(TypeError, match="objective"):
        l2optim.select_lambda(0.1)


# --------------------------------------------------------------------------- the log


def test_log_is_reused_and_is_strict_json(tmp_path):
    log = tmp_path / "search.jsonl"

    def sometimes_inf(lam: float) -> list[float]:
        return [math.inf, 1.0] if lam > 0.5 else bowl(1e-4)(lam)

    first = l2optim.select_lambda(sometimes_inf, log=log, progress=False)
    lines = log.read_text().splitlines()
    assert len(lines) == len(first.evaluations)
    for line in lines:  # no bare NaN/Infinity tokens
        json.loads(line, parse_constant=lambda token: pytest.fail(f"non-JSON {token}"))

    again = CountingObjective(sometimes_inf)
    second = l2optim.select_lambda(again, log=log, progress=False)
    assert again.calls == []
    assert second == first
    assert len(log.read_text().splitlines()) == len(lines)


def test_log_from_other_bounds_is_reused_by_lambda(tmp_path):
    log = tmp_path / "search.jsonl"
    l2optim.select_lambda(bowl(1e-3), bounds=(1e-6, 1.0), log=log, progress=False)
    logged = set(read_log(log))
    again = CountingObjective(bowl(1e-3))
    l2optim.select_lambda(again, bounds=(1e-5, 1e-2), n_grid=4, log=log, progress=False)
    shared = logged & set(np.geomspace(1e-5, 1e-2, 4).tolist())
    assert len(shared) >= 3  # the two grids share 1e-4, 1e-3 and 1e-2 exactly
    assert not shared & set(again.calls)


def test_a_line_cut_short_is_skipped_and_ended(tmp_path):
    log = tmp_path / "search.jsonl"
    l2optim.select_lambda(bowl(1e-3), log=log, n_grid=4, xtol=0.1, progress=False)
    with log.open("a") as f:
        f.write('{"lam": 0.5, "sco')
    first = read_log(log)
    again = CountingObjective(bowl(1e-3))
    l2optim.select_lambda(again, log=log, progress=False)
    assert not set(first) & set(again.calls)
    assert len(read_log(log)) == len(first) + len(set(again.calls))


KILLED_SEARCH = textwrap.dedent(
    """
    import math, sys, time
    import l2optim

    def objective(lam):
        time.sleep(0.15)
        x = math.log(lam / 3e-3)
        return [x * x + 0.2 * x**3 / (1 + x * x) + 0.05 * j for j in range(5)]

    l2optim.select_lambda(objective, log=sys.argv[1], progress=False)
    print("finished")
    """
)


def test_search_killed_midway_resumes_from_its_log(tmp_path):
    log = tmp_path / "search.jsonl"
    script = tmp_path / "search.py"
    script.write_text(KILLED_SEARCH)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, str(script), str(log)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not (log.exists() and len(log.read_text().splitlines()) >= 9):
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the search wrote no log"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    assert b"finished" not in process.stdout.read()
    logged = read_log(log)
    assert len(logged) >= 9

    resumed_objective = CountingObjective(bowl(3e-3))
    resumed = l2optim.select_lambda(resumed_objective, log=log, progress=False)
    uninterrupted_objective = CountingObjective(bowl(3e-3))
    uninterrupted = l2optim.select_lambda(uninterrupted_objective, progress=False)

    assert not set(logged) & set(resumed_objective.calls)
    assert len(logged) + len(resumed_objective.calls) == len(uninterrupted_objective.calls)
    assert resumed.lambda_min == uninterrupted.lambda_min
    assert resumed.lambda_1se == uninterrupted.lambda_1se
    assert [(e.lam, e.scores) for e in resumed.evaluations] == [
        (e.lam, e.scores) for e in uninterrupted.evaluations
    ]


# --------------------------------------------------------------------------- progress, plot


def test_progress_bar_and_missing_tqdm(monkeypatch, capsys):
    l2optim.select_lambda(bowl(1e-3), n_grid=4, xtol=0.1, progress=True)
    assert "select_lambda" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    search = l2optim.select_lambda(bowl(1e-3), n_grid=4, xtol=0.1)
    assert search.lambda_min == pytest.approx(1e-3, rel=0.1)
    with pytest.raises(ImportError, match=r"l2optim\[progress\]"):
        l2optim.select_lambda(bowl(1e-3), progress=True)


def test_plot_writes_a_png(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    search = l2optim.select_lambda(bowl(1e-3), progress=False)
    ax = search.plot()
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert any("λ_min" in label for label in labels) and any("λ_1se" in label for label in labels)
    path = tmp_path / "curve.png"
    ax.figure.savefig(path)
    plt.close(ax.figure)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- the CV curve


def test_both_results_are_cv_curves_with_one_api():
    search = l2optim.select_lambda(bowl(1e-3), progress=False)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4))
    ridge = l2optim.ridge_cv(X, X @ [1.0, -1.0, 0.5, 0.0] + rng.normal(size=30))
    for result in (search, ridge):
        assert isinstance(result, l2optim.CVCurve)
        lambdas = np.asarray(result.lambdas)
        assert np.all(np.diff(lambdas) > 0)  # ascending, one row per λ evaluated
        assert len(result.cv_mean) == len(result.cv_se) == len(lambdas)
        best = int(np.argmin(result.cv_mean))
        assert result.lambda_min == lambdas[best]
        assert result.lambda_1se >= result.lambda_min
        assert result.bounds[0] <= lambdas[0] and lambdas[-1] <= result.bounds[1]
        assert result.at_edge is None
    # The search's curve is its evaluations, sorted by λ.
    by_lambda = sorted(search.evaluations, key=lambda e: e.lam)
    assert search.lambdas.tolist() == [e.lam for e in by_lambda]
    assert search.cv_mean.tolist() == [e.mean for e in by_lambda]
    assert search.cv_se.tolist() == [e.se for e in by_lambda]


# --------------------------------------------------------------------------- the edges


@pytest.mark.parametrize(
    ("objective", "edge"),
    [
        (lambda lam: [lam, 1.1 * lam, 0.9 * lam], "lower"),  # smaller is always better
        (lambda lam: [1 / lam, 1.1 / lam, 0.9 / lam], "upper"),
    ],
)
def test_lambda_min_on_an_edge_is_flagged_and_warned(objective, edge):
    with pytest.warns(l2optim.LambdaAtEdgeWarning, match=f"{edge} end"):
        search = l2optim.select_lambda(objective, bounds=(1e-3, 1.0), progress=False)
    assert search.at_edge == edge
    assert search.lambda_min == (1e-3 if edge == "lower" else 1.0)


def test_an_interior_minimum_is_not_on_an_edge(recwarn):
    search = l2optim.select_lambda(bowl(1e-3), progress=False)
    assert search.at_edge is None
    assert not [w for w in recwarn if issubclass(w.category, l2optim.LambdaAtEdgeWarning)]


# --------------------------------------------------------------------------- the noise-aware stop


def curve_with_folds(mean_curve, se: float, folds: int = 5):
    """Per-fold scores m(λ) + z_j·se·√k, z fixed with mean 0 and sd 1: the mean of the scores
    is exactly m(λ) and their standard error exactly ``se``."""
    z = np.arange(folds) - (folds - 1) / 2
    z = z / z.std(ddof=1)
    spread = z * se * math.sqrt(folds)

    def objective(lam: float) -> list[float]:
        return (mean_curve(math.log(lam)) + spread).tolist()

    return objective


def softplus(t: float) -> float:
    return max(t, 0.0) + math.log1p(math.exp(-abs(t)))


@settings(max_examples=40)
@given(
    centre=st.floats(-11.0, -2.0),
    left=st.floats(0.01, 1.0),
    right=st.floats(0.01, 3.0),
    curvature=st.floats(0.0, 0.05),
    log10_se=st.floats(-6.0, -1.0),
    fraction=st.sampled_from([0.05, 0.1, 0.5]),
)
def test_the_noise_aware_stop_stays_inside_the_band_it_claims(
    centre, left, right, curvature, log10_se, fraction
):
    # Convex CV curves in ln λ: flat on the left, rising on the right, as a CV curve is.
    def mean_curve(x: float) -> float:
        return (
            left * softplus(-(x - centre)) + right * softplus(x - centre)
            + curvature * (x - centre) ** 2
        )

    se = 10.0**log10_se
    objective = CountingObjective(curve_with_folds(mean_curve, se))
    search = l2optim.select_lambda(
        objective, bounds=(1e-6, 1.0), xtol=1e-9, se_fraction=fraction, progress=False
    )
    dense = np.linspace(math.log(1e-6), 0.0, 20001)
    lowest = min(mean_curve(x) for x in dense)
    # The claim: stopping early costs less than `fraction` standard errors of CV score.
    assert mean_curve(math.log(search.lambda_min)) - lowest <= fraction * se + 1e-12
    # And it stops sooner than refining to xtol would.
    exhaustive = CountingObjective(curve_with_folds(mean_curve, se))
    l2optim.select_lambda(exhaustive, bounds=(1e-6, 1.0), xtol=1e-9, se_fraction=None,
                          progress=False)
    assert len(objective.calls) <= len(exhaustive.calls)


def test_a_dip_far_inside_the_noise_is_not_refined():
    # A dip of depth 1e-4 in a curve whose standard error is 1e-2: Brent alone spends
    # many evaluations on it; the noise-aware stop spends few.
    dip = curve_with_folds(lambda x: 1.0 + 1e-4 * ((x + 7) / 3) ** 2, se=1e-2)
    plain = CountingObjective(dip)
    l2optim.select_lambda(plain, se_fraction=None, progress=False)
    aware = CountingObjective(dip)
    search = l2optim.select_lambda(aware, progress=False)
    assert len(aware.calls) <= 7 + 2 < len(plain.calls)
    assert search.lambda_1se is not None


def test_single_scores_have_no_noise_aware_stop():
    plain = CountingObjective(lambda lam: 1.0 + 1e-4 * (math.log10(lam) + 3) ** 2)
    l2optim.select_lambda(plain, se_fraction=None, progress=False)
    default = CountingObjective(lambda lam: 1.0 + 1e-4 * (math.log10(lam) + 3) ** 2)
    l2optim.select_lambda(default, progress=False)
    assert default.calls == plain.calls


# --------------------------------------------------------------------------- default bounds


class WithDefaultBounds(CountingObjective):
    def default_bounds(self) -> tuple[float, float]:
        return (1e-2, 1e3)


def test_bounds_default_to_the_objectives_own():
    objective = WithDefaultBounds(bowl(3.0))
    search = l2optim.select_lambda(objective, progress=False)
    assert search.bounds == (1e-2, 1e3)
    assert search.lambda_min == pytest.approx(3.0, rel=0.02)
    plain = l2optim.select_lambda(bowl(1e-3), progress=False)
    assert plain.bounds == (1e-6, 1.0)
