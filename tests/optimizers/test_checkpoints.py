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


# -- the way back: l2optim.to_torch_state_dict ---------------------------------------------

EXACT_IN_TORCH = [
    ("SGDW", {"lr": 0.1}, "lr", torch.optim.SGD),
    ("SGDW", {"lr": 0.1, "weight_decay": 0.05}, "schedule", torch.optim.SGD),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}, "lr", torch.optim.AdamW),
    ("AdamW", {"lr": 0.01, "weight_decay": 0.1}, "schedule", torch.optim.Adam),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}, "lr", torch.optim.SGD),
    ("RMSprop", {"lr": 0.01, "weight_decay": 0.01}, "lr", torch.optim.RMSprop),
]


@pytest.mark.parametrize(("name", "hyper", "scaling", "torch_class"), EXACT_IN_TORCH,
                         ids=lambda v: v if isinstance(v, str) else "")
def test_torch_continues_what_the_translation_says(name, hyper, scaling, torch_class) -> None:
    """Under a schedule, torch.optim continues the l2optim run, decoupled decay included."""
    model = _model()
    ours = getattr(l2optim, name)(model.parameters(), **hyper, weight_decay_scaling=scaling)
    scheduler = torch.optim.lr_scheduler.StepLR(ours, 1, 0.5)
    _train(model, ours, range(2), scheduler)
    translated = _save_and_load(l2optim.to_torch_state_dict(ours))

    twin = _copy_of(model)
    theirs = torch_class(twin.parameters(), **hyper)
    theirs.load_state_dict(translated)
    their_scheduler = torch.optim.lr_scheduler.StepLR(theirs, 1, 0.5)
    their_scheduler.load_state_dict(scheduler.state_dict())
    _train(model, ours, range(2, 5), scheduler)
    _train(twin, theirs, range(2, 5), their_scheduler)
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    assert all("lr_ref" not in g for g in translated["param_groups"])


def test_a_decoupled_checkpoint_loaded_as_is_into_torch_changes_the_decay() -> None:
    """Why the translation exists: torch.optim.SGD ignores decoupled_weight_decay."""
    model = _model()
    ours = l2optim.SGDW(model.parameters(), lr=0.5, weight_decay=0.4, momentum=0.9)
    _train(model, ours, range(2))
    twin = _copy_of(model)
    theirs = torch.optim.SGD(twin.parameters())
    theirs.load_state_dict(ours.state_dict())  # silently: coupled decay with λ = 0.4
    _train(model, ours, range(2, 3))
    _train(twin, theirs, range(2, 3))
    assert not torch.allclose(model[0].weight, twin[0].weight, atol=1e-3)


def test_approximate_gives_the_coupled_fixed_point_of_sgd_with_momentum() -> None:
    model = _model()
    ours = l2optim.SGDW(model.parameters(), lr=0.1, momentum=0.9, dampening=0.1,
                        weight_decay=0.05, weight_decay_scaling="schedule")
    ours.param_groups[0]["lr"] = 0.05  # a scheduler halved it
    with pytest.raises(ValueError, match=r"param group 0: no exact .*approximate=True"):
        l2optim.to_torch_state_dict(ours)
    group = l2optim.to_torch_state_dict(ours, approximate=True)["param_groups"][0]
    expected = l2optim.conversions.coupled_from_decoupled(
        0.05, lr=0.05, momentum=0.9, dampening=0.1, weight_decay_scaling="schedule",
        lr_ref=0.1,
    )
    assert group["weight_decay"] == pytest.approx(expected)
    assert "decoupled_weight_decay" not in group and "weight_decay_scaling" not in group


def test_scaling_none_is_approximate_and_decoupled_rmsprop_has_no_equivalent() -> None:
    model = _model()
    adamw = l2optim.AdamW(model.parameters(), lr=0.01, weight_decay=1e-3,
                          weight_decay_scaling="none")
    with pytest.raises(ValueError, match="weight_decay_scaling='none'"):
        l2optim.to_torch_state_dict(adamw)
    group = l2optim.to_torch_state_dict(adamw, approximate=True)["param_groups"][0]
    assert group["weight_decay"] == pytest.approx(1e-3 / 0.01)
    assert group["decoupled_weight_decay"] is True
    rmspropw = l2optim.RMSpropW(model.parameters(), weight_decay=1e-3)
    for approximate in (False, True):
        with pytest.raises(ValueError, match="torch's RMSprop has no decoupled weight decay"):
            l2optim.to_torch_state_dict(rmspropw, approximate=approximate)
    with pytest.raises(TypeError, match="l2optim SGD, Adam or RMSprop"):
        l2optim.to_torch_state_dict(torch.optim.SGD(model.parameters()))


@pytest.mark.parametrize(("name", "hyper", "scaling", "torch_class"), EXACT_IN_TORCH,
                         ids=lambda v: v if isinstance(v, str) else "")
def test_a_saved_state_dict_translates_as_the_live_optimizer(name, hyper, scaling, torch_class):
    model = _model()
    ours = getattr(l2optim, name)(model.parameters(), **hyper, weight_decay_scaling=scaling)
    _train(model, ours, range(2))
    live = l2optim.to_torch_state_dict(ours)
    # A checkpoint read back from disk, with no optimizer around.
    saved = l2optim.to_torch_state_dict(_save_and_load(ours.state_dict()))
    assert saved["param_groups"] == live["param_groups"]
    assert saved["state"].keys() == live["state"].keys()
    for index, state in live["state"].items():
        for key, value in state.items():
            assert torch.equal(saved["state"][index][key], value)


def test_decay_groups_need_the_same_groups_in_torch_and_share_the_state() -> None:
    """The way back with decay_groups, as the docs show it: torch's optimizer is built
    with the same groups, and the translation's tensors are the optimizer's own."""
    model = _model()
    ours = l2optim.SGDW(l2optim.decay_groups(model, 0.05), lr=0.1, momentum=0.9)
    _train(model, ours, range(2))
    translated = l2optim.to_torch_state_dict(ours, approximate=True)
    weight = model[0].weight
    assert translated["state"][0]["momentum_buffer"] is ours.state[weight]["momentum_buffer"]
    with pytest.raises(ValueError, match="different number of parameter groups"):
        torch.optim.SGD(model.parameters()).load_state_dict(translated)
    theirs = torch.optim.SGD(l2optim.decay_groups(model, 0.0), lr=0.1, momentum=0.9)
    theirs.load_state_dict(translated)
    assert [g["weight_decay"] for g in theirs.param_groups] == [
        pytest.approx(0.05 * (1 - 0.9)), 0.0
    ]


def test_what_is_not_an_l2optim_state_dict_is_refused() -> None:
    model = _model()
    with pytest.raises(TypeError, match="not one an l2optim SGD, Adam or RMSprop saved"):
        l2optim.to_torch_state_dict(torch.optim.SGD(model.parameters()).state_dict())
    with pytest.raises(TypeError, match="a dict with 'state' and 'param_groups'"):
        l2optim.to_torch_state_dict({"weights": 1})

