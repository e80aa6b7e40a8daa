"""Plans kept from step to step (l2optim/_group_memo.py) are never stale.

An optimizer keeps each param group's plan (where the decay sits, what runs the update)
while the group is unchanged. Whatever a user, a scheduler or a checkpoint changes
between steps must show in the next step: each test changes one thing mid-run and
compares every parameter bit for bit with torch.optim given the same change (with the
decoupled decay written as a user would, ``p ← p·(1 − s·λ)`` before torch's step), or
with an optimizer that never took a step before.
"""

from __future__ import annotations

import copy
import importlib
import inspect

import pytest
import torch
from _counting import count_calls
from torch import nn

import l2optim
from l2optim.optimizers._memo import GroupMemo, same_objects

SGD_MODULE = importlib.import_module("torch.optim.sgd")
SIZES = [(4, 3), (3,), (2, 4)]


# -- the memo itself ---------------------------------------------------------------------


def _group(**entries) -> dict:
    return {"params": [torch.zeros(2), torch.zeros(3)], "lr": 0.1, "weight_decay": 0.0,
            "betas": (0.9, 0.99), "foreach": None, "name": "decay", **entries}


def test_a_memo_fits_its_group_while_nothing_changes() -> None:
    group, state = _group(), {}
    memo = GroupMemo.of(group, state, "plan")
    assert memo is not None and memo.fits(group, state) and memo.value == "plan"


@pytest.mark.parametrize(
    "change",
    [
        lambda g: g.update(weight_decay=0.5),
        lambda g: g.update(weight_decay=float("0.0")),  # equal, but another object
        lambda g: g.update(betas=tuple(g["betas"][:1]) + (0.99,)),  # an equal new tuple
        lambda g: g.update(foreach=False),
        lambda g: g.update(extra=None),
        lambda g: g.pop("name"),
        lambda g: g.update(lr=g.pop("lr")),  # the same entries in another order
        lambda g: g["params"].append(torch.zeros(1)),
        lambda g: g["params"].pop(),
        lambda g: g["params"].__setitem__(0, torch.zeros(2)),
        lambda g: g.update(params=list(g["params"])),  # the same tensors in a new list
    ],
    ids=["value", "equal-value", "equal-tuple", "implementation", "new-key", "removed-key",
         "reordered", "param-appended", "param-removed", "param-replaced", "new-list"],
)
def test_any_change_of_the_group_is_seen(change) -> None:
    group, state = _group(), {}
    memo = GroupMemo.of(group, state, "plan")
    change(group)
    assert not memo.fits(group, state)


def test_another_group_or_state_is_seen() -> None:
    group, state = _group(), {}
    memo = GroupMemo.of(group, state, "plan")
    assert not memo.fits(dict(group), state)
    assert not memo.fits(group, {})


@pytest.mark.parametrize(
    "entry",
    [{"lr": torch.tensor(0.1)}, {"betas": (torch.tensor(0.9), 0.99)}, {"schedule": [1, 2]},
     {"weights": {"a": 1}}],
    ids=["tensor", "tensor-in-tuple", "list", "dict"],
)
def test_a_group_holding_what_may_change_in_place_is_not_kept(entry) -> None:
    assert GroupMemo.of(_group(**entry), {}, "plan") is None


def test_param_names_do_not_stop_a_memo() -> None:
    group = _group(param_names=["a", "b"])
    assert GroupMemo.of(group, {}, "plan") is not None


def test_a_number_only_entry_may_take_another_number() -> None:
    group, state = _group(), {}
    memo = GroupMemo.of(group, state, "plan", number_key="lr")
    for lr in (0.05, 1, 0.05):
        group["lr"] = lr
        assert memo.fits(group, state)
    for lr in (torch.tensor(0.05), True, None):
        group["lr"] = lr
        assert not memo.fits(group, state)
    group["lr"] = 0.2
    group["weight_decay"] = 0.1  # and something else changes too
    assert not memo.fits(group, state)


def test_same_objects_compares_identity_not_values() -> None:
    a, b = torch.ones(1), torch.ones(1)
    assert same_objects([a, b], (a, b))
    assert not same_objects([a, b], (a, a))
    assert not same_objects([a], (a, b))


# -- optimizers: every change shows in the next step ---------------------------------------


def _params() -> list[nn.Parameter]:
    generator = torch.Generator().manual_seed(0)
    return [nn.Parameter(torch.randn(shape, generator=generator)) for shape in SIZES]


def _gradients(step: int, *param_lists: list[nn.Parameter]) -> None:
    generator = torch.Generator().manual_seed(100 + step)
    first = param_lists[0]
    for i, p in enumerate(first):
        g = torch.randn(p.shape, generator=generator)
        for params in param_lists:
            params[i].grad = g.to(params[i].dtype)


def _assert_same(ours: list[nn.Parameter], theirs: list[nn.Parameter]) -> None:
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


def _scale(group: dict) -> float:
    """s of the decoupled rule p ← p·(1 − s·λ) for the group's settings."""
    return {"lr": group["lr"], "none": 1.0}.get(
        group["weight_decay_scaling"], group["lr"] / group.get("lr_ref", 1.0)
    )


#: The entries of an l2optim.SGD group that the torch oracle follows.
SETTINGS = ("lr", "momentum", "foreach", "fused", "weight_decay", "decoupled_weight_decay",
            "weight_decay_scaling", "lr_ref")


class _TorchSGD:
    """torch.optim.SGD following l2optim's settings, with decoupled decay written by hand.

    With momentum the decay is ``p ← p·(1 − s·λ)`` before torch's step; without it, it is
    torch's own weight_decay λ·s/lr (the same update: docs/conventions.md, "The update
    rules"). ``settings`` holds, per group, the entries of the l2optim group it follows,
    changed by the test as it changes those: the oracle never reads the optimizer under
    test.
    """

    def __init__(self, params: list[nn.Parameter], ours: torch.optim.Optimizer) -> None:
        kwargs = {k: v for k, v in ours.defaults.items()
                  if k in inspect.signature(torch.optim.SGD).parameters}
        self.optimizer = torch.optim.SGD(params, **kwargs)
        self.settings = [self.follow(group) for group in ours.param_groups]

    @staticmethod
    def follow(group: dict) -> dict:
        return {key: group[key] for key in SETTINGS}

    @torch.no_grad()
    def step(self) -> None:
        for group, ours in zip(self.optimizer.param_groups, self.settings, strict=True):
            for key in ("lr", "momentum", "foreach", "fused", "weight_decay"):
                group[key] = ours[key]
            decay = ours["weight_decay"]
            if ours["decoupled_weight_decay"] and decay:
                s = _scale(ours)
                if ours["momentum"] == 0:
                    group["weight_decay"] = decay if s is ours["lr"] else decay * s / ours["lr"]
                else:
                    group["weight_decay"] = 0.0
                    params = [p for p in group["params"] if p.grad is not None]
                    torch._foreach_mul_(params, 1 - s * decay)
        self.optimizer.step()


def _step_both(step: int, ours, theirs: _TorchSGD, ours_params, theirs_params) -> None:
    _gradients(step, ours_params, theirs_params)
    ours.step()
    theirs.step()
    _assert_same(ours_params, theirs_params)
    # and the step left the user's settings as they were
    assert [_TorchSGD.follow(group) for group in ours.param_groups] == theirs.settings


def _run_sgd(ours_kwargs: dict, changes: dict, steps: int = 6) -> None:
    """Steps of l2optim.SGD and of the torch oracle, ``changes[k]`` applied to the first
    group of each before step k."""
    ours_params, theirs_params = _params(), _params()
    ours = l2optim.SGD(ours_params, **ours_kwargs)
    theirs = _TorchSGD(theirs_params, ours)
    for step in range(steps):
        if step in changes:
            changes[step](ours.param_groups[0])
            changes[step](theirs.settings[0])
        _step_both(step, ours, theirs, ours_params, theirs_params)


DECOUPLED = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1, "decoupled_weight_decay": True}


def test_the_lr_set_between_steps() -> None:
    _run_sgd(DECOUPLED, {k: (lambda g, k=k: g.update(lr=0.1 / (k + 1))) for k in range(1, 6)})


def test_a_scheduler_each_step() -> None:
    ours_params, theirs_params = _params(), _params()
    ours = l2optim.SGD(ours_params, **DECOUPLED)
    theirs = _TorchSGD(theirs_params, ours)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(ours, T_max=5)
    for step in range(6):
        theirs.settings[0]["lr"] = ours.param_groups[0]["lr"]  # what the scheduler set
        _step_both(step, ours, theirs, ours_params, theirs_params)
        scheduler.step()


@pytest.mark.parametrize("decoupled", [False, True])
def test_a_tensor_lr_changed_in_place(decoupled: bool) -> None:
    """Schedulers write a tensor lr in place: the same object, another value."""
    lr = torch.tensor(0.1)
    ours_params, theirs_params = _params(), _params()
    ours = l2optim.SGD(ours_params, lr=lr, momentum=0.9, weight_decay=0.1,
                       decoupled_weight_decay=decoupled)
    theirs = torch.optim.SGD(theirs_params, lr=lr.clone(), momentum=0.9,
                             weight_decay=0.0 if decoupled else 0.1)
    for step in range(5):
        _gradients(step, ours_params, theirs_params)
        ours.step()
        if decoupled:
            with torch.no_grad():
                torch._foreach_mul_(theirs_params, 1 - theirs.param_groups[0]["lr"] * 0.1)
        theirs.step()
        _assert_same(ours_params, theirs_params)
        for optimizer in (ours, theirs):
            optimizer.param_groups[0]["lr"].mul_(0.5)


def test_an_lr_that_becomes_a_tensor() -> None:
    """torch's foreach Adam refuses a tensor lr: the default must go back to the loop."""
    ours_params, theirs_params = _params(), _params()
    ours = l2optim.Adam(ours_params, lr=0.01, weight_decay=0.1)
    theirs = torch.optim.Adam(theirs_params, lr=0.01, weight_decay=0.1)
    for step in range(4):
        if step == 2:
            for optimizer in (ours, theirs):
                optimizer.param_groups[0]["lr"] = torch.tensor(0.02)
        _gradients(step, ours_params, theirs_params)
        ours.step()
        theirs.step()
        _assert_same(ours_params, theirs_params)


def test_the_weight_decay_set_between_steps() -> None:
    _run_sgd(DECOUPLED, {1: lambda g: g.update(weight_decay=0.2),
                         3: lambda g: g.update(weight_decay=0.0),
                         4: lambda g: g.update(weight_decay=0.05)})


def test_the_momentum_set_between_steps() -> None:
    # Without momentum decoupled decay runs in torch's update; with it, before it.
    _run_sgd({**DECOUPLED, "momentum": 0.0}, {1: lambda g: g.update(momentum=0.9),
                                              3: lambda g: g.update(momentum=0.0),
                                              4: lambda g: g.update(momentum=0.5)})


def test_the_form_switched_between_steps() -> None:
    _run_sgd(DECOUPLED, {k: (lambda g: g.update(decoupled_weight_decay=not g[
        "decoupled_weight_decay"])) for k in range(1, 6)})


def test_the_scaling_and_reference_lr_set_between_steps() -> None:
    _run_sgd(DECOUPLED, {1: lambda g: g.update(weight_decay_scaling="none"),
                         2: lambda g: g.update(weight_decay_scaling="schedule"),
                         3: lambda g: g.update(lr_ref=0.5),
                         4: lambda g: g.update(lr=0.2),
                         5: lambda g: g.update(weight_decay_scaling="lr")})


def test_an_implementation_chosen_after_construction(monkeypatch) -> None:
    """The default runs small CPU tensors on foreach kernels; the user's choice wins."""
    multi, single, fused = (count_calls(monkeypatch, SGD_MODULE, f"_{kind}_sgd")
                            for kind in ("multi_tensor", "single_tensor", "fused"))
    changes = {2: lambda g: g.update(foreach=False), 4: lambda g: g.update(foreach=None,
                                                                           fused=True)}
    _run_sgd({"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}, changes)
    # Each step ran once in l2optim and once in torch, which runs the loop by default.
    assert (multi[0], single[0], fused[0]) == (2, 2 + 2 + 2, 2 + 2)


def test_a_group_added_after_steps() -> None:
    ours_params, theirs_params = _params(), _params()
    ours = l2optim.SGD(ours_params[:2], **DECOUPLED)
    theirs = _TorchSGD(theirs_params[:2], ours)
    for step in range(5):
        if step == 2:
            extra = {"lr": 0.05, "weight_decay": 0.3}
            ours.add_param_group({"params": ours_params[2:], **extra})
            theirs.optimizer.add_param_group({"params": theirs_params[2:], **extra})
            theirs.settings.append(_TorchSGD.follow(ours.param_groups[1]))
        _step_both(step, ours, theirs, ours_params, theirs_params)


# bfloat16: torch's foreach update rounds otherwise than its loop, which l2optim's default
# must then run. A new tensor the plan did not see would be run as the old ones were.
@pytest.mark.parametrize(
    "change",
    [
        lambda g, p: g["params"].append(p),
        lambda g, p: g["params"].__setitem__(0, p),
    ],
    ids=["appended", "replaced"],
)
def test_a_param_list_changed_in_place(change) -> None:
    ours_params, theirs_params = _params(), _params()
    generator = torch.Generator().manual_seed(1)
    new = torch.randn(6, generator=generator, dtype=torch.bfloat16)
    ours_new, theirs_new = nn.Parameter(new.clone()), nn.Parameter(new.clone())
    ours = l2optim.SGD(ours_params, lr=0.1, momentum=0.9, weight_decay=0.1)
    theirs = torch.optim.SGD(theirs_params, lr=0.1, momentum=0.9, weight_decay=0.1)
    for step in range(6):
        if step == 2:
            change(ours.param_groups[0], ours_new)
            change(theirs.param_groups[0], theirs_new)
        ours_list, theirs_list = ours.param_groups[0]["params"], theirs.param_groups[0]["params"]
        _gradients(step, ours_list, theirs_list)
        ours.step()
        theirs.step()
        _assert_same(ours_list, theirs_list)


def test_a_checkpoint_loaded_after_steps() -> None:
    """A checkpoint with other settings, loaded into an optimizer that planned its steps,
    steps as an optimizer that starts from the checkpoint."""
    source_params, ours_params, fresh_params = _params(), _params(), _params()
    source = l2optim.SGD(source_params, lr=0.05, momentum=0.9, weight_decay=0.2)
    ours = l2optim.SGD(ours_params, **DECOUPLED)
    for step in range(2):
        _gradients(step, source_params, ours_params)
        source.step()
        ours.step()
    checkpoint = copy.deepcopy(source.state_dict())
    ours.load_state_dict(checkpoint)
    with torch.no_grad():
        for p, q in zip(ours_params, fresh_params, strict=True):
            q.copy_(p)
    fresh = l2optim.SGD(fresh_params, **DECOUPLED)
    fresh.load_state_dict(copy.deepcopy(checkpoint))
    for step in range(2, 5):
        _gradients(step, ours_params, fresh_params)
        ours.step()
        fresh.step()
        _assert_same(ours_params, fresh_params)
