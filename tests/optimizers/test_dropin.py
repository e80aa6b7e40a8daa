"""``import l2optim as optim`` in place of ``from torch import optim``."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import torch
from torch import nn

import l2optim
import l2optim as optim


@pytest.mark.parametrize(
    "name",
    ["lr_scheduler", "swa_utils", "Optimizer", "Adagrad", "Adamax", "NAdam", "LBFGS", "SparseAdam"],
)
def test_names_we_do_not_define_are_torchs(name: str) -> None:
    assert getattr(optim, name) is getattr(torch.optim, name)
    assert name in dir(optim)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW", "RMSprop"])
def test_our_classes_are_torchs_subclasses(name: str) -> None:
    ours, theirs = getattr(optim, name), getattr(torch.optim, name)
    assert ours is not theirs and issubclass(ours, theirs)


def test_submodules_import_by_their_dotted_names() -> None:
    assert importlib.import_module("l2optim.lr_scheduler") is torch.optim.lr_scheduler
    from l2optim.swa_utils import AveragedModel

    assert AveragedModel is torch.optim.swa_utils.AveragedModel
    # In a fresh interpreter too, where nothing else imported them first.
    code = "import l2optim.lr_scheduler as s, torch.optim.lr_scheduler as t; assert s is t"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Adamm'"):
        optim.Adamm  # noqa: B018


def test_public_names_are_listed() -> None:
    for name in l2optim.__all__:
        assert hasattr(l2optim, name), name
    assert {"SGD", "SGDW", "Adam", "AdamW", "RMSprop", "RMSpropW"} <= set(l2optim.__all__)
    assert {"decay_groups", "with_weight_decay"} <= set(l2optim.__all__)


def _script(optim_module) -> list[torch.Tensor]:
    """A training script as users write it, against whichever ``optim`` it is given."""
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    optimizer = optim_module.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2)
    scheduler = optim_module.lr_scheduler.CosineAnnealingLR(optimizer, T_max=5)
    averaged = optim_module.swa_utils.AveragedModel(model)
    x, y = torch.randn(8, 3), torch.randn(8, 2)
    for _ in range(5):
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        scheduler.step()
        averaged.update_parameters(model)
    return [p.detach() for p in (*model.parameters(), *averaged.module.parameters())]


def test_a_torch_script_runs_unchanged_with_the_same_numbers() -> None:
    ours, theirs = _script(optim), _script(torch.optim)
    for a, b in zip(ours, theirs, strict=True):
        # l2optim picks torch's fused kernel by default: the same maths, other rounding.
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
