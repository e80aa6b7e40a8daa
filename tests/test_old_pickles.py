"""What users pickled with l2optim 0.1.0 loads and carries on: optimizers inside
``torch.save``, a trainer and its objective, the searches' results.

``tests/data/pickles-0.1.0.pt`` was written by ``tests/data/make_old_pickles.py`` with the
package's first module layout; each entry holds what the object gave then.
"""

from __future__ import annotations

import io
import pickle
import sys
from pathlib import Path

import pytest
import torch

import l2optim

sys.path.insert(0, str(Path(__file__).parent / "data"))
from make_old_pickles import _step  # noqa: E402

OLD = torch.load(Path(__file__).parent / "data" / "pickles-0.1.0.pt", weights_only=False)


@pytest.mark.parametrize("name", sorted(OLD["optimizers"]))
def test_an_old_optimizer_continues_bit_for_bit(name: str) -> None:
    entry = OLD["optimizers"][name]
    saved = torch.load(io.BytesIO(entry["pickled"]), weights_only=False)
    model, optimizer = saved["model"], saved["optimizer"]
    assert isinstance(optimizer, torch.optim.Optimizer)
    for step in range(2, 4):
        _step(model, optimizer, step)
    for p, expected in zip(model.parameters(), entry["after"], strict=True):
        assert torch.equal(p.detach(), expected)


def test_old_selection_objects_load_and_give_the_same_numbers() -> None:
    entry = OLD["selection"]
    loaded = pickle.loads(entry["pickled"])
    assert loaded["objective"](0.01) == entry["scores"]
    lambdas = (loaded["search"].lambda_min, loaded["ridge"].lambda_min, loaded["race"].lambda_min)
    assert lambdas == entry["lambda_min"]
    for curve in ("search", "ridge", "race"):
        assert isinstance(loaded[curve], l2optim.CVCurve)
    X, _, _ = l2optim.data.load_diabetes()
    prediction = loaded["model"](torch.as_tensor(X[:5])).detach()
    assert torch.equal(prediction, entry["prediction"])
