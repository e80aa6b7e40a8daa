"""Refining λ near the best scored: Brent's steps on ln λ, and one rule for when to stop.

Both searches end the same way. :func:`l2optim.select_lambda` (and ``ridge_cv``) refines a
grid's best point with scipy's bounded Brent method; the race (``select_lambda_fast``)
refines its last rung with the same steps written out (:func:`brent_step`: the parabola
through the best point and its neighbours, or a golden-section step), because each of its
points costs a training run and the three it already holds are used at once. Both stop by
:func:`settled`: once a CV curve convex in ln λ through the points scored could lie at most
``se_fraction`` standard errors below the best mean, no further λ could gain what the folds
can resolve, and λ_min costs at most that against the minimum of such a curve.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

__all__ = [
    "DEFAULT_SE_FRACTION",
    "brent_step",
    "parabola_vertex",
    "possible_improvement",
    "settled",
]

#: Refining stops once it could gain less than this many standard errors of CV score.
DEFAULT_SE_FRACTION = 0.1

#: The golden-section fraction, (3 − √5)/2.
_GOLDEN = 0.3819660112501051


def possible_improvement(seen: Mapping[float, float]) -> float:
    r"""How far below the best value a convex curve through the points ``seen`` can go.

    ``seen`` maps x = ln λ to the mean score. With the best point x and its nearest
    evaluated neighbours a < x < b, a convex curve lies above the extension of the chord
    a–x on [x, b] and above that of the chord x–b on [a, x], so its minimum (inside
    [a, b]) is at least

    .. math:: f(x) - \max\Big(\Delta_a \frac{b-x}{x-a},\ \Delta_b \frac{x-a}{b-x}\Big),
              \quad \Delta_a = f(a)-f(x),\ \Delta_b = f(b)-f(x).

    Infinite when the best point has no neighbour on one side (an edge of the range) or a
    neighbour's score is not finite.
    """
    x = min(seen, key=seen.__getitem__)
    left = [t for t in seen if t < x]
    right = [t for t in seen if t > x]
    if not left or not right:
        return math.inf
    a, b = max(left), min(right)
    delta_a, delta_b = seen[a] - seen[x], seen[b] - seen[x]
    return max(delta_a * (b - x) / (x - a), delta_b * (x - a) / (b - x))


def settled(seen: Mapping[float, float], standard_error: float | None, se_fraction: float | None) -> bool:
    """Whether refining should stop: what is left to gain is within the noise.

    ``standard_error`` is that of the best mean; without one (single scores, a diverged
    fold) or without ``se_fraction``, never.
    """
    if se_fraction is None or standard_error is None or not math.isfinite(standard_error):
        return False
    return possible_improvement(seen) <= se_fraction * standard_error


def parabola_vertex(log_lambdas: np.ndarray, means: np.ndarray) -> float | None:
    """The minimiser of the parabola through three points (x, m), or None.

    None unless the points bracket a minimum (the middle one is lowest) and the parabola
    opens upwards; the vertex then lies between the outer two.
    """
    (x0, x1, x2), (m0, m1, m2) = log_lambdas, means
    if not (np.isfinite(means).all() and m1 <= m0 and m1 <= m2):
        return None
    numerator = (x1 - x0) ** 2 * (m1 - m2) - (x1 - x2) ** 2 * (m1 - m0)
    denominator = (x1 - x0) * (m1 - m2) - (x1 - x2) * (m1 - m0)
    if denominator >= 0:  # flat or opening downwards (denominator < 0 when convex here)
        return None
    vertex = x1 - 0.5 * numerator / denominator
    return float(min(max(vertex, x0), x2))


def brent_step(x: np.ndarray, means: np.ndarray) -> float:
    """Brent's choice of the next ln λ in the bracket x0 < x1 < x2 around the best x1.

    The parabola's vertex, unless it falls within a tenth of the wider side of x1 (a
    parabola fitted to a lopsided bracket keeps landing next to x1 and the far side
    never shrinks); then the golden-section point of the wider side.
    """
    vertex = parabola_vertex(x, means)
    wide = x[0] if x[1] - x[0] > x[2] - x[1] else x[2]
    if vertex is None or abs(vertex - x[1]) < 0.1 * abs(wide - x[1]):
        return float(x[1] + _GOLDEN * (wide - x[1]))
    return vertex
