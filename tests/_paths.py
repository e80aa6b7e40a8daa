"""The paths a step can take, as test cases: each class with each implementation it takes.

Shared by the tests of the decay rules (corrected, scheduled, cautious, towards a
reference), which run every rule on every path and compare it with an oracle.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

#: Constructor arguments that choose the implementation; "default" chooses nothing.
IMPLEMENTATIONS: dict[str, dict[str, bool]] = {
    "loop": {"foreach": False},
    "foreach": {"foreach": True},
    "fused": {"fused": True},
    "default": {},
}


def cases(classes: list[tuple[type, dict[str, Any], list[str]]]) -> list[Any]:
    """``pytest.param(cls, hyper, implementation)`` for each class, each implementation it
    takes, and the default."""
    return [
        pytest.param(cls, hyper, implementation, id=f"{cls.__name__}{hyper or ''}-{implementation}")
        for cls, hyper, implementations in classes
        for implementation in [*implementations, "default"]
    ]


def small_params(seed: int = 0, shapes=((6, 5), (7,), (3, 2, 2))) -> list[torch.nn.Parameter]:
    """A matrix, a vector and a 3-d tensor, drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=generator)) for s in shapes]
