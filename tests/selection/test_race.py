"""The race over λ on synthetic validation curves: its plan, its window and its stop."""

from __future__ import annotations

import math
import re
import typing
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import l2optim
from l2optim.selection._race import (
    STOP_REASONS,
    RaceStop,
    Rung,
    chosen_lambda,
    plan_race,
    plan_rungs,
    planned_cost,
    race,
    window,
)
from l2optim.selection._refine import parabola_vertex, possible_improvement, settled

STEPS_PER_EPOCH = 10  # per fold: one epoch of one λ on k folds is k·10 steps


class SyntheticRuns:
    """Contestants whose fold scores are a formula of (ln λ, epochs, fold).

    Score of fold j after e epochs: a bowl in ln λ whose minimum moves from ``start`` to
    ``centre`` over the first half of training (weight decay acting late), plus a fold
    offset and a fixed wobble per (λ, fold) of size ``noise``.
    """

    def __init__(self, lambdas, *, centre, start, width, folds, noise, seed, epochs_total):
        self.lambdas = np.asarray(lambdas, dtype=float)
        self.centre, self.start, self.width = centre, start, width
        self.folds, self.noise, self.seed = folds, noise, seed
        self.epochs_total = epochs_total
        self.epochs = 0
        self.cost = 0

    def close(self):
        pass

    def train_to(self, epochs):
        self.cost += (
            len(self.lambdas) * self.folds * STEPS_PER_EPOCH * (epochs - self.epochs)
        )
        self.epochs = epochs

    def scores(self):
        progress = min(1.0, 2 * self.epochs / self.epochs_total)
        minimum = self.start + (self.centre - self.start) * progress
        x = np.log(self.lambdas)[:, None]
        offsets = 0.1 * np.arange(self.folds)[None, :]
        wobble = np.array(
            [
                [
                    np.random.default_rng([self.seed, int(1e6 * (v + 50)), j]).normal()
                    for j in range(self.folds)
                ]
                for v in np.log(self.lambdas)
            ]
        )
        return 1 + ((x - minimum) / self.width) ** 2 + offsets + self.noise * wobble

    def keep(self, index):
        self.lambdas = self.lambdas[list(index)]


def starter(**curve):
    return lambda lambdas: SyntheticRuns(lambdas, **curve)


def cost_per_lambda_epoch(folds, epochs_total):
    # A "run" is epochs_total epochs on all the data, taken here as STEPS_PER_EPOCH steps.
    return folds * STEPS_PER_EPOCH / (epochs_total * STEPS_PER_EPOCH)


# --------------------------------------------------------------------------- the plan


@settings(max_examples=60)
@given(
    n=st.integers(3, 20),
    eta=st.sampled_from([2.0, 3.0, 4.0]),
    epochs=st.integers(3, 200),
    budget=st.floats(0.5, 40.0),
)
def test_plan_fits_the_budget_and_no_longer_plan_does(n, eta, epochs, budget):
    unit = cost_per_lambda_epoch(5, epochs)
    plan = plan_rungs(
        n, eta=eta, survivors=3, epochs=epochs, cost_per_lambda_epoch=unit, budget=budget
    )
    field = [n]
    while field[-1] > 3:
        field.append(max(3, math.ceil(field[-1] / eta)))
    if plan is None:  # not even one epoch per rung fits
        assert budget < planned_cost([(i + 1, m) for i, m in enumerate(field)], unit)
        return
    targets = [e for e, _ in plan]
    assert [m for _, m in plan] == field
    assert targets == sorted(set(targets)) and targets[-1] <= epochs
    assert planned_cost(plan, unit) <= budget * (1 + 1e-12)
    if targets[-1] < epochs:  # one more epoch at the last rung would not fit or not exist
        longer = plan_rungs(
            n, eta=eta, survivors=3, epochs=epochs, cost_per_lambda_epoch=unit, budget=1e9
        )
        assert longer[-1][0] > targets[-1]


@settings(max_examples=40)
@given(budget=st.floats(0.3, 30.0), first=st.integers(1, 40))
def test_the_race_buys_the_most_candidates_whose_first_rung_is_long_enough(budget, first):
    unit = cost_per_lambda_epoch(5, 60)
    options = dict(eta=2, survivors=3, epochs=60, cost_per_lambda_epoch=unit, budget=budget)
    try:
        plan = plan_race(12, first_epochs=first, **options)
    except ValueError as error:
        assert "budget must be at least" in str(error) and budget < 3 * unit
        return
    assert planned_cost(plan, unit) <= budget * (1 + 1e-12)
    n = plan[0][1]
    if plan[0][0] >= first:
        # No larger field has a long enough first rung within the budget.
        for more in range(n + 1, 13):
            longer = plan_rungs(more, first_epochs=first, **options)
            assert longer is None
    else:
        # The fallback: the survivors alone, in one rung as long as the budget allows.
        assert plan == plan_rungs(3, **options) and len(plan) == 1


def test_a_budget_below_one_epoch_for_the_survivors_is_refused():
    with pytest.raises(ValueError, match=r"budget must be at least 0.15 .* got 0.01"):
        plan_race(
            10,
            eta=3,
            survivors=3,
            epochs=100,
            cost_per_lambda_epoch=0.05,
            budget=0.01,
            first_epochs=1,
        )


# --------------------------------------------------------------------------- decisions


@given(
    means=st.lists(st.floats(-10, 10), min_size=3, max_size=12),
    size=st.integers(1, 12),
    lean=st.integers(0, 3),
)
def test_window_is_contiguous_and_holds_the_best(means, size, lean):
    means = np.array(means)
    kept = window(means, size, lean)
    best = int(np.argmin(means))
    assert best in kept
    assert len(kept) == min(size, len(means))
    assert (np.diff(kept) == 1).all()
    # From lean below the best, unless the grid's ends get in the way.
    assert kept[0] == min(max(best - min(lean, len(kept) - 1), 0), len(means) - len(kept))


@given(
    a=st.floats(0.1, 10),
    vertex=st.floats(-3, 3),
    c=st.floats(-5, 5),
    gaps=st.tuples(st.floats(0.2, 3), st.floats(0.2, 3)),
    shift=st.floats(-1, 1),
)
def test_parabola_vertex_is_exact_for_a_parabola(a, vertex, c, gaps, shift):
    x1 = vertex + shift * min(gaps)
    x = np.array([x1 - gaps[0], x1, x1 + gaps[1]])
    means = a * (x - vertex) ** 2 + c
    if not (means[1] <= means[0] and means[1] <= means[2]):
        assert parabola_vertex(x, means) is None
        return
    assert parabola_vertex(x, means) == pytest.approx(vertex, abs=1e-6)


def test_parabola_vertex_refuses_what_is_not_a_bracket():
    x = np.array([0.0, 1.0, 2.0])
    assert parabola_vertex(x, np.array([1.0, 2.0, 3.0])) is None  # increasing
    assert parabola_vertex(x, np.array([1.0, 1.0, 1.0])) is None  # flat
    assert parabola_vertex(x, np.array([1.0, np.inf, 0.0])) is None


# --------------------------------------------------------------------------- the race


CURVES = st.fixed_dictionaries(
    {
        "centre": st.floats(-10, -1),
        "start": st.floats(-14, -6),
        "width": st.floats(0.5, 4.0),
        "folds": st.integers(2, 6),
        "noise": st.sampled_from([0.0, 1e-3, 0.02, 0.2]),
        "seed": st.integers(0, 1000),
        "epochs_total": st.just(60),
    }
)


@settings(max_examples=60)
@given(curve=CURVES, se_fraction=st.sampled_from([0.0, 0.1, 0.5, 2.0]), extra=st.integers(0, 12))
def test_the_stop_never_stops_outside_the_band_it_claims(curve, se_fraction, extra):
    grid = np.exp(np.linspace(-13, 0, 12))
    unit = cost_per_lambda_epoch(curve["folds"], curve["epochs_total"])
    plan = plan_rungs(
        len(grid), eta=3, survivors=3, epochs=60, cost_per_lambda_epoch=unit, budget=10.0
    )
    record = race(starter(**curve), grid, plan, lean=1, se_fraction=se_fraction, refinements=extra)
    final = record.final
    means, ses = final.means, final.standard_errors
    best = int(np.argmin(means))
    inside = 0 < best < len(means) - 1
    seen = dict(zip(np.log(final.lambdas).tolist(), means.tolist(), strict=True))
    # The claim of "settled": a convex curve through the points scored could lie at most
    # se_fraction standard errors below the best mean.
    band = inside and bool(possible_improvement(seen) <= se_fraction * ses[best])
    refined = len(final.lambdas) - len(record.rungs[-1].lambdas)
    assert refined <= extra
    assert record.stop in typing.get_args(RaceStop)
    if record.stop == "settled":
        assert band  # it claimed the band: the bracket is inside it
    elif record.stop in ("budget", "repeat"):
        assert not band  # it went on refining only while outside the band
        assert record.stop != "budget" or refined == extra
    else:
        assert record.stop == "bound" and best in (0, len(means) - 1)


def synthetic_race(
    grid,
    *,
    centre,
    start,
    width,
    folds,
    noise=0.0,
    seed=0,
    eta,
    budget,
    se_fraction=0.0,
    refinements=0,
):
    """The race on :class:`SyntheticRuns` of 60 epochs; its record and plan."""
    curve = dict(
        centre=centre,
        start=start,
        width=width,
        folds=folds,
        noise=noise,
        seed=seed,
        epochs_total=60,
    )
    unit = cost_per_lambda_epoch(folds, 60)
    plan = plan_rungs(
        len(grid), eta=eta, survivors=3, epochs=60, cost_per_lambda_epoch=unit, budget=budget
    )
    record = race(
        starter(**curve), grid, plan, lean=1, se_fraction=se_fraction, refinements=refinements
    )
    return record, plan


def test_refinement_finds_the_minimum_of_a_noiseless_bowl():
    grid = np.exp(np.linspace(-13, 0, 12))
    record, _ = synthetic_race(
        grid, centre=-5.3, start=-5.3, width=1.5, folds=5, eta=3, budget=30, refinements=5
    )
    # A parabola in ln λ: the first vertex is exact, and stays the best λ scored.
    assert math.log(record.lambda_min) == pytest.approx(-5.3, abs=1e-9)


def test_the_window_follows_a_minimum_that_moves_right():
    # The first rung favours λ = e^-6; from half the training on, e^-4 is best. The window
    # keeps the right side of the first rung's best, so the last rung still holds e^-4.
    grid = np.exp(np.linspace(-13, 0, 14))
    record, plan = synthetic_race(
        grid, centre=-4.0, start=-6.0, width=1.0, folds=3, eta=2, budget=9
    )
    assert plan[0][0] < 10 and plan[-1][0] >= 30
    first = record.rungs[0]
    assert math.log(first.lambdas[np.argmin(first.means)]) == pytest.approx(-6.0)
    assert math.log(record.lambda_min) == pytest.approx(-4.0, abs=1e-6)


def test_the_steps_counted_are_the_planned_cost():
    grid = np.exp(np.linspace(-10, 0, 9))
    record, plan = synthetic_race(
        grid,
        centre=-5.0,
        start=-7.0,
        width=2.0,
        folds=4,
        noise=0.01,
        seed=1,
        eta=3,
        budget=4,
        se_fraction=0.1,
    )
    assert record.cost / (60 * STEPS_PER_EPOCH) == pytest.approx(
        planned_cost(plan, cost_per_lambda_epoch(4, 60))
    )


def test_settled_needs_a_finite_standard_error():
    # ln λ → mean: the best at 0, neighbours at ±1 scoring 0.05 and 0.02 above it.
    seen = {-1.0: 1.05, 0.0: 1.0, 1.0: 1.02}
    assert possible_improvement(seen) == pytest.approx(0.05)
    assert settled(seen, 1.0, 0.1)
    assert not settled({-1.0: 1.5, 0.0: 1.0, 1.0: 1.02}, 1.0, 0.1)
    # A lopsided bracket can hide a deeper minimum on its long side.
    assert possible_improvement({-0.1: 1.05, 0.0: 1.0, 1.0: 1.02}) == pytest.approx(0.5)
    assert not settled(seen, math.nan, 0.1) and not settled(seen, None, 0.1)
    assert not settled(seen, 1.0, None)
    assert not settled({-1.0: np.inf, 0.0: 1.0, 1.0: 1.0}, 1.0, 0.1)
    assert not settled({0.0: 1.0, 1.0: 1.02}, 1.0, 0.1)  # no neighbour on one side


def test_a_rung_averages_over_folds_and_marks_divergence():
    rung = Rung(5, np.array([0.1, 0.2]), np.array([[1.0, 3.0], [1.0, np.inf]]))
    assert rung.means.tolist() == [2.0, np.inf]
    assert rung.standard_errors[0] == pytest.approx(math.sqrt(2) / math.sqrt(2))


def test_rungs_and_races_compare_by_their_numbers():
    rung = Rung(3, np.array([0.1, 1.0]), np.array([[1.0, np.inf], [2.0, 3.0]]))
    same = Rung(3, np.array([0.1, 1.0]), np.array([[1.0, np.inf], [2.0, 3.0]]))
    other = Rung(3, np.array([0.1, 1.0]), np.array([[1.0, np.inf], [2.0, 3.5]]))
    assert rung == same and rung != other and Rung(4, same.lambdas, same.scores) != same


# --------------------------------------------------------------------------- the choice


def _rung(log_lambdas, means) -> Rung:
    """A last rung of one fold: its means are ``means``."""
    return Rung(10, np.exp(np.asarray(log_lambdas, dtype=float)), np.asarray(means)[:, None])


@given(
    a=st.floats(0.1, 10),
    vertex=st.floats(-3, 3),
    gaps=st.lists(st.floats(0.2, 3), min_size=2, max_size=6),
    start=st.floats(-8, -4),
)
def test_the_choice_is_halfway_from_the_best_point_to_the_vertex(a, vertex, gaps, start):
    """On a parabola in ln λ, the vertex is exact: the choice is the midpoint in ln λ of it
    and the best point scored (brute force: the argmin of the means), or that point where
    it has no neighbour on one side."""
    x = start + np.concatenate([[0.0], np.cumsum(gaps)])
    vertex = start + vertex + 0.5 * (x[-1] - start)  # anywhere from below to above the rung
    means = a * (x - vertex) ** 2
    best = int(np.argmin(means))
    chosen = math.log(chosen_lambda(_rung(x, means)))
    if best in (0, len(x) - 1):
        assert chosen == pytest.approx(x[best], abs=1e-12)
    else:
        assert chosen == pytest.approx(0.5 * (x[best] + vertex), abs=1e-6)
        # so it stays between the best point's neighbours
        assert x[best - 1] < chosen < x[best + 1]


def test_the_choice_keeps_the_best_point_without_a_bracket():
    x = [-3.0, -2.0, -1.0, 0.0]
    # The best at an end of the rung: no bracket.
    assert chosen_lambda(_rung(x, [1.0, 2.0, 3.0, 4.0])) == pytest.approx(math.exp(-3.0))
    assert chosen_lambda(_rung(x, [4.0, 3.0, 2.0, 1.0])) == pytest.approx(1.0)
    # A tie with a neighbour is still a bracket: the vertex lies midway between the two.
    assert chosen_lambda(_rung(x, [2.0, 1.0, 1.0, 1.0])) == pytest.approx(math.exp(-1.75))
    # A diverged neighbour: no parabola through it.
    assert chosen_lambda(_rung(x, [np.inf, 1.0, 2.0, 3.0])) == pytest.approx(math.exp(-2.0))


def test_the_choice_refuses_a_rung_where_every_lambda_diverged():
    with pytest.raises(ValueError, match="every λ in the race diverged"):
        chosen_lambda(_rung([-2.0, -1.0, 0.0], [np.inf, np.nan, np.inf]))


def test_a_race_reports_the_choice_of_its_last_rung():
    grid = np.exp(np.linspace(-10, 0, 9))
    record, _ = synthetic_race(
        grid, centre=-4.6, start=-4.6, width=2.0, folds=3, eta=3, budget=4
    )
    assert record.lambda_chosen == chosen_lambda(record.final)
    assert record.lambda_min == record.final.lambdas[np.argmin(record.final.means)]
    # The bowl's minimum lies between grid points: the choice moves towards it.
    assert abs(math.log(record.lambda_chosen) + 4.6) < abs(math.log(record.lambda_min) + 4.6)


def test_every_stop_the_race_can_give_is_documented_and_no_other():
    stops = set(typing.get_args(RaceStop))
    assert set(STOP_REASONS) == stops
    documented = l2optim.LambdaRace.__doc__.split("stop:", 1)[1].split("cost:")[0]
    assert set(re.findall(r'``"([a-z ]+)"``', documented)) == stops
    assert typing.get_type_hints(l2optim.LambdaRace)["stop"] == RaceStop



def test_the_docs_table_of_stops_says_what_the_code_says():
    page = (Path(__file__).resolve().parents[2] / "docs" / "choosing_lambda.md").read_text()
    for stop, reason in STOP_REASONS.items():
        assert f"| `{stop}` | {reason} |" in page
