"""Argument checks, with one policy for the whole package.

* A value of the wrong type raises ``TypeError``; a value of the right type outside the
  allowed range raises ``ValueError``.
* The message names the argument, shows the value (its ``repr``) and states what is
  allowed: ``"folds must be an integer in [2, n_samples=10], got 11"``.

Each check returns the value in its plain Python form (``float``, ``int``, ``bool``), so
a caller keeps what was checked rather than the raw argument.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np

__all__ = [
    "check_bool",
    "check_bounds",
    "check_callable",
    "check_count",
    "check_finite",
    "check_float_array",
    "check_fraction",
    "check_interval",
    "check_non_negative",
    "check_optimizer_class",
    "check_positive",
    "check_real",
]


def _is_real(value: Any) -> bool:
    # numbers.Real covers int, float, numpy scalars; a 0-d tensor or array is a number too.
    # bool is an Integral, but True as a learning rate is a mistake, not a 1.
    if isinstance(value, bool):
        return False
    if isinstance(value, Real):
        return True
    return getattr(value, "ndim", None) == 0 and hasattr(value, "item") and _is_real(value.item())


def check_real(name: str, value: Any) -> float:
    """``value`` as a float; ``TypeError`` unless it is a real number (not a bool)."""
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value.item() if hasattr(value, "item") else value)


def check_finite(name: str, value: Any) -> float:
    """A finite real number."""
    real = check_real(name, value)
    if not math.isfinite(real):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return real


def check_non_negative(name: str, value: Any) -> float:
    """A finite real number ≥ 0."""
    real = check_finite(name, value)
    if real < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return real


def check_positive(name: str, value: Any) -> float:
    """A finite real number > 0."""
    real = check_finite(name, value)
    if real <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return real


def check_fraction(name: str, value: Any) -> float:
    """A real number in [0, 1), such as a momentum or a dampening."""
    return check_interval(name, value, low=0, high=1, high_open=True)


def check_interval(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number between ``low`` and ``high`` (each end included unless open;
    None: no limit on that side): ``"eta must be > 1"``, ``"… must be in (0, 1]"``."""
    real = check_finite(name, value)
    too_low = low is not None and (real <= low if low_open else real < low)
    too_high = high is not None and (real >= high if high_open else real > high)
    if too_low or too_high:
        if high is None:
            allowed = f"{'>' if low_open else '>='} {low:g}"
        elif low is None:
            allowed = f"{'<' if high_open else '<='} {high:g}"
        else:
            allowed = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return real


def check_float_array(name: str, value: Any) -> np.ndarray:
    """A float64 numpy array of finite numbers, from an array, a tensor or a sequence."""
    if hasattr(value, "detach"):  # torch.Tensor
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a numeric array or tensor, got {value!r}") from None
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values; it must be finite")
    return array


def check_optimizer_class(name: str, value: Any) -> type:
    """A subclass of ``torch.optim.Optimizer`` (the class, not an instance)."""
    import torch  # here: the package's other checks need no torch

    if not (isinstance(value, type) and issubclass(value, torch.optim.Optimizer)):
        raise TypeError(f"{name} must be a torch.optim.Optimizer subclass, got {value!r}")
    return value


def check_count(
    name: str, value: Any, *, low: int = 1, high: int | None = None, high_name: str | None = None
) -> int:
    """An integer in [``low``, ``high``] (``high`` None: no upper limit), as an ``int``.

    Any integer type is accepted, and a float with an integral value (``3.0``); a bool,
    a fractional or non-finite float or any other type is a ``TypeError``. ``high_name``
    names where the upper limit comes from: ``"n_samples"`` gives ``[2, n_samples=10]``.
    """
    if high is None:
        allowed = f">= {low}"
    else:
        upper = high if high_name is None else f"{high_name}={high}"
        allowed = f"in [{low}, {upper}]"
    message = f"{name} must be an integer {allowed}, got {value!r}"
    whole_float = isinstance(value, float) and math.isfinite(value) and value.is_integer()
    if isinstance(value, bool) or not (isinstance(value, Integral) or whole_float):
        raise TypeError(message)
    count = int(value)
    if count < low or (high is not None and count > high):
        raise ValueError(message)
    return count


def check_random_state(name: str, value: Any) -> Any:
    """A seed for ``np.random.default_rng``: None, an integer >= 0, a SeedSequence or a
    Generator (returned as given)."""
    if value is None or isinstance(value, np.random.SeedSequence | np.random.Generator):
        return value
    message = f"{name} must be None, an integer >= 0 or a numpy Generator, got {value!r}"
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(message)
    if value < 0:
        raise ValueError(message)
    return value


def check_bool(name: str, value: Any) -> bool:
    """``True`` or ``False`` (a numpy bool too); anything else is a ``TypeError``."""
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_callable(name: str, value: Any, *, allow_none: bool = False) -> Any:
    """A callable (or ``None`` when allowed); ``TypeError`` naming the type otherwise."""
    if value is None and allow_none:
        return None
    if not callable(value):
        allowed = "callable or None" if allow_none else "callable"
        raise TypeError(f"{name} must be {allowed}, got {type(value).__name__}")
    return value


def check_bounds(bounds: Any, name: str = "bounds") -> tuple[float, float]:
    """``(lo, hi)`` as floats with 0 < lo < hi < ∞: a search interval for λ."""
    try:
        pair = tuple(bounds)
    except TypeError:
        pair = None
    if pair is None or isinstance(bounds, str) or not all(_is_real(b) for b in pair):
        raise TypeError(f"{name} must be two real numbers (lo, hi), got {bounds!r}")
    if len(pair) != 2:
        raise ValueError(f"{name} must be two real numbers (lo, hi), got {bounds!r}")
    lo, hi = (float(b) for b in pair)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0 < lo < hi):
        raise ValueError(f"{name} must satisfy 0 < lo < hi < inf, got {(lo, hi)!r}")
    return lo, hi
