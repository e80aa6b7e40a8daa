import os

import torch
from hypothesis import HealthCheck, settings

# CI must be reproducible: the same examples on every run.
settings.register_profile(
    "ci",
    derandomize=True,
    database=None,  # no examples replayed from earlier local runs
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# Two cores: more threads than that only adds contention; when the suite is spread over
# worker processes (``pytest -n 2``), one thread each.
torch.set_num_threads(
    1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads())
)
