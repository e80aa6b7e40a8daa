"""Hypothesis profiles: derandomized by default, random on request.

- ``derandomized`` (the default, also under the name ``ci``): every run draws the same
  examples from a seed derived from each test, with no example database, so
  ``python -m pytest`` gives the same result on every run and on every machine with the
  same Hypothesis version.
- ``explore`` (``HYPOTHESIS_PROFILE=explore``): fresh random examples on every run, and
  ``HYPOTHESIS_EXPLORE_FACTOR`` (default 10) times as many of them; ``--hypothesis-seed=N``
  replays a run. Failures print the blob that reproduces them.

Tests that choose their own number of examples write ``max_examples=examples(n)``: n under
the default profile, n times the factor when exploring.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "derandomized")
EXPLORE_FACTOR = int(os.environ.get("HYPOTHESIS_EXPLORE_FACTOR", "10"))

_COMMON = {
    "deadline": None,
    "database": None,  # no examples replayed from earlier runs
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow],
}
settings.register_profile("derandomized", derandomize=True, **_COMMON)
settings.register_profile("ci", derandomize=True, **_COMMON)
settings.register_profile(
    "explore", derandomize=False, max_examples=100 * EXPLORE_FACTOR, **_COMMON
)


def examples(count: int) -> int:
    """``count`` examples, or ``count`` times the explore factor under ``explore``."""
    return count * EXPLORE_FACTOR if PROFILE == "explore" else count


def load() -> None:
    """Load the profile named by ``HYPOTHESIS_PROFILE`` (``derandomized`` if unset)."""
    settings.load_profile(PROFILE)
