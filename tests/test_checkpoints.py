"""Checkpoints: torch.optim ⇄ l2optim, resuming mid-run, and ``weights_only`` loading."""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from torch import nn

import l2optim

HYPER: dict[str, dict[str, Any]] = {
    "SGD": {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01},
    "Adam": {"lr": 0.01, "weight_decay": 0.01, "amsgrad": True},
    "AdamW": {"lr": 0.01, "weight_decay": 0.1},
    "RMSprop": {"lr": 0.01, "weight_decay": 0.01, "centered": True, "momentum": 0.5},
}


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 1))


def _train(
    model: nn.Module, optimizer: torch.optim.Optimizer, steps: range, scheduler=None
) -> None:
    for step in steps:
        generator = torch.Generator().manual_seed(step)
        x, y = torch.randn(8, 3, generator=generator), torch.randn(8, 1, generator=generator)
        optimizer.zero_grad()
        nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def _save_and_load(obj: Any) -> Any:
    """Through bytes, read back with ``weights_only=True`` as a careful user would."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _copy_of(model: nn.Module) -> nn.Module:
    twin = _model()
    twin.load_state_dict(model.state_dict())
    return twin


def _assert_same_params(a: nn.Module, b: nn.Module) -> None:
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("name", HYPER)
def test_torch_checkpoint_continues_in_l2optim(name: str) -> None:
    model = _model()
    theirs = getattr(torch.optim, name)(model.parameters(), **HYPER[name])
    _train(model, theirs, range(3))
    checkpoint = _save_and_load(theirs.state_dict())

    twin = _copy_of(model)
    ours = getattr(l2optim, name)(twin.parameters(), **HYPER[name])
    ours.load_state_dict(checkpoint)
    _train(model, theirs, range(3, 6))
    _train(twin, ours, range(3, 6))
    _assert_same_params(twin, model)


@pytest.mark.parametrize("name", HYPER)
def test_l2optim_checkpoint_continues_in_torch(name: str) -> None:
    model = _model()
    ours = getattr(l2optim, name)(model.parameters(), **HYPER[name])
    _train(model, ours, range(3))
    checkpoint = _save_and_load(ours.state_dict())

    twin = _copy_of(model)
    theirs = getattr(torch.optim, name)(twin.parameters(), **HYPER[name])
    theirs.load_state_dict(checkpoint)
    _train(model, ours, range(3, 6))
    _train(twin, theirs, range(3, 6))
    _assert_same_params(twin, model)


RESUMABLE = [
    (name, decoupled, scaling)
    for name in ("SGD", "Adam", "RMSprop")
    for decoupled, scaling in ((False, "lr"), (True, "lr"), (True, "schedule"), (True, "none"))
] + [("AdamW", True, "lr")]


@pytest.mark.parametrize("name, decoupled, scaling", RESUMABLE)
def test_resuming_mid_run_is_bit_identical(name: str, decoupled: bool, scaling: str) -> None:
    def start(model: nn.Module):
        optimizer = getattr(l2optim, name)(
            model.parameters(),
            **HYPER[name],
            decoupled_weight_decay=decoupled,
            weight_decay_scaling=scaling,
        )
        return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, 2, 0.5)

    straight = _model()
    optimizer, scheduler = start(straight)
    _train(straight, optimizer, range(6), scheduler)

    stopped = _model()
    optimizer, scheduler = start(stopped)
    _train(stopped, optimizer, range(3), scheduler)
    checkpoint = _save_and_load(
        {
            "model": stopped.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
        }
    )

    resumed = _model()
    resumed.load_state_dict(checkpoint["model"])
    optimizer, scheduler = start(resumed)
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    _train(resumed, optimizer, range(3, 6), scheduler)
    _assert_same_params(resumed, straight)
    for group in optimizer.param_groups:
        assert group["decoupled_weight_decay"] is decoupled
        assert group["weight_decay_scaling"] == scaling


def test_adamw_checkpoint_keeps_a_coupled_choice() -> None:
    """torch.optim.AdamW forces decoupled decay on load; l2optim.AdamW keeps what was saved."""
    model = _model()
    optimizer = l2optim.AdamW(model.parameters(), weight_decay=0.1, decoupled_weight_decay=False)
    _train(model, optimizer, range(2))
    restored = l2optim.AdamW(_copy_of(model).parameters())
    restored.load_state_dict(_save_and_load(optimizer.state_dict()))
    assert restored.param_groups[0]["decoupled_weight_decay"] is False
