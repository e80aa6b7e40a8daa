import functools
import os

import _profiles
import pytest
import torch

from l2optim.optimizers import _compiled

# The same examples on every run, CI or not; HYPOTHESIS_PROFILE=explore draws new ones.
_profiles.load()

# Two cores: more threads than that only adds contention; when the suite is spread over
# worker processes (``pytest -n 2``), one thread each.
torch.set_num_threads(
    1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, torch.get_num_threads())
)


# -- fused=True's compiled steps -----------------------------------------------------------

# The steps traced by Dynamo and AOTAutograd and run as traced; one cache for the session.
_TRACED_STEPS: dict = {}
_trace_only = functools.partial(_compiled._compile, backend="aot_eager")


@pytest.fixture(autouse=True)
def compiled_steps_without_codegen(request, monkeypatch):
    """Outside tests marked ``inductor``, ``fused=True``'s compiled steps skip Inductor.

    Inductor takes 10 to 60 s to generate each configuration's kernel on a machine whose
    compile cache is empty, as a CI machine's is, and the class tests run dozens of
    configurations. What they check (the plan, the decay, GradScaler, the state) is the
    traced graph's arithmetic, which the ``aot_eager`` backend runs as traced, graph breaks
    still failing under ``fullgraph``. tests/optimizers/test_compiled.py checks Inductor's kernels.
    """
    if request.node.get_closest_marker("inductor") is None:
        monkeypatch.setattr(_compiled, "_compile", _trace_only)
        monkeypatch.setattr(_compiled, "_by_configuration", _TRACED_STEPS)
    yield
