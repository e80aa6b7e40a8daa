"""Contract tests for l2optim.SGD, Adam and RMSprop over the configuration table.

* coupled decay gives torch.optim's numbers (bit for bit where the same kernel runs);
* decoupled decay follows the rule of docs/conventions.md ("The update rules"), written
  out in tests/_configs.py;
* state_dict keeps torch's layout, adds our settings and round-trips;
* dtypes are preserved; bad values raise torch's own errors, and ours are clear.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from typing import Any

import pytest
import torch
from _configs import (
    CLASSES,
    CONFIGS,
    HYPERPARAMETERS,
    NO_GRAD,
    SCALINGS,
    Config,
    as_float,
    assert_same,
    initial_params,
    param_groups,
    reference_run,
    run,
    take_steps,
    tensors_equal,
    torch_twins,
)
from torch import nn

import l2optim

COUPLED_DECAY = 0.1


def _build(cls: type, config: Config, weight_decay: float, **extra: Any):
    def make(params: list[nn.Parameter]) -> torch.optim.Optimizer:
        kwargs = config.kwargs(**extra)
        lr = kwargs.pop("lr", inspect.signature(cls).parameters["lr"].default)
        if isinstance(lr, torch.Tensor) and "lr" not in config.hyper:
            lr = lr.clone()
        return cls(param_groups(params, lr, weight_decay), lr=lr, **kwargs)

    return make


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_coupled_matches_torch(config: Config) -> None:
    params0 = initial_params(torch.float32)
    ours, _ = run(_build(config.ours, config, COUPLED_DECAY), params0, schedule=True)
    for torch_kwargs, exact in torch_twins(config):
        twin = Config(config.name, config.hyper, "default")
        theirs, _ = run(
            _build(config.theirs, twin, COUPLED_DECAY, **torch_kwargs), params0, schedule=True
        )
        assert_same(ours, theirs, exact=exact)


@pytest.mark.parametrize(
    "name, hyper",
    [(name, hyper) for name, table in HYPERPARAMETERS.items() for hyper in table],
    ids=str,
)
def test_reference_rule_is_torch_when_coupled(name: str, hyper: dict[str, Any]) -> None:
    # The oracle of the decoupled tests is itself checked against torch.optim here.
    config = Config(name, hyper, "single")
    params0 = initial_params(torch.float64)
    theirs, optimizer = run(_build(config.theirs, config, COUPLED_DECAY), params0, schedule=True)
    expected = reference_run(name, _as_built(optimizer), params0, decoupled=False, schedule=True)
    assert_same(theirs, expected, exact=False, rtol=1e-10, atol=1e-12)


def _as_built(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """The param groups with the lr they started with, before the scheduler ran."""
    return [{**g, "lr": g["initial_lr"]} for g in optimizer.param_groups]


def _decoupled_decay(config: Config, scaling: str) -> float:
    """λ large enough that a wrong rule shows: s·λ = 0.05 in the first group."""
    if scaling != "lr":
        return 0.05
    lr = config.hyper.get("lr", inspect.signature(config.ours).parameters["lr"].default)
    return 0.05 / lr


@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_decoupled_matches_reference_rule(config: Config, scaling: str) -> None:
    params0 = initial_params(torch.float64)
    weight_decay = _decoupled_decay(config, scaling)
    make = _build(
        config.ours,
        config,
        weight_decay,
        decoupled_weight_decay=True,
        weight_decay_scaling=scaling,
    )
    ours, optimizer = run(make, params0, schedule=True)
    expected = reference_run(
        config.name, _as_built(optimizer), params0, decoupled=True, scaling=scaling, schedule=True
    )
    assert_same(ours, expected, exact=False, rtol=1e-10, atol=1e-12)
    # A parameter without a gradient is not decayed, though its group has λ > 0.
    assert torch.equal(ours[NO_GRAD].detach(), params0[NO_GRAD])


@pytest.mark.parametrize(
    "config",
    [c for c in CONFIGS if c.name == "Adam" or (c.name == "SGD" and "momentum" not in c.hyper)],
    ids=str,
)
def test_decoupled_runs_on_torchs_own_kernel_where_it_has_one(config: Config) -> None:
    """Adam's decoupled mode is AdamW; SGD without momentum decays alike in both forms."""
    params0 = initial_params(torch.float32)
    make = _build(config.ours, config, COUPLED_DECAY, decoupled_weight_decay=True)
    ours, _ = run(make, params0, schedule=True)
    extra = {"decoupled_weight_decay": True} if config.name == "Adam" else {}
    for torch_kwargs, exact in torch_twins(config):
        twin = Config(config.name, config.hyper, "default")
        theirs, _ = run(
            _build(config.theirs, twin, COUPLED_DECAY, **torch_kwargs, **extra),
            params0,
            schedule=True,
        )
        assert_same(ours, theirs, exact=exact)


@pytest.mark.parametrize("name", CLASSES)
def test_each_group_chooses_its_form(name: str) -> None:
    """One optimizer, a decoupled group with scaling "none" and a coupled group."""
    ours_cls, theirs_cls = CLASSES[name]
    params0 = initial_params(torch.float64)
    lr = 0.01

    def groups(params):
        return [
            {
                "params": params[:1],
                "weight_decay": 0.05,
                "decoupled_weight_decay": True,
                "weight_decay_scaling": "none",
            },
            {"params": params[1:], "weight_decay": 0.2},
        ]

    ours, optimizer = run(lambda p: ours_cls(groups(p), lr=lr), params0)
    reference = {
        decoupled: reference_run(
            name,
            theirs_cls(groups([nn.Parameter(p) for p in params0]), lr=lr).param_groups,
            params0,
            decoupled=decoupled,
            scaling="none",
        )
        for decoupled in (True, False)
    }
    assert_same(ours[:1], reference[True][:1], exact=False, rtol=1e-10, atol=1e-12)
    assert_same(ours[1:], reference[False][1:], exact=False, rtol=1e-10, atol=1e-12)
    assert [g["decoupled_weight_decay"] for g in optimizer.param_groups] == [True, False]


@pytest.mark.parametrize(
    "cls, decoupled",
    [
        (l2optim.SGD, False),
        (l2optim.SGDW, True),
        (l2optim.Adam, False),
        (l2optim.AdamW, True),
        (l2optim.RMSprop, False),
        (l2optim.RMSpropW, True),
    ],
)
def test_default_form(cls: type, decoupled: bool) -> None:
    optimizer = cls([nn.Parameter(torch.zeros(2))])
    assert optimizer.defaults["decoupled_weight_decay"] is decoupled
    assert optimizer.param_groups[0]["weight_decay_scaling"] == "lr"


def test_adamw_is_torch_adamw_with_its_default_decay() -> None:
    params0 = initial_params(torch.float32)
    ours, _ = run(lambda p: l2optim.AdamW(p, lr=0.01, foreach=False), params0)
    theirs, _ = run(lambda p: torch.optim.AdamW(p, lr=0.01, foreach=False), params0)
    assert isinstance(l2optim.AdamW([nn.Parameter(torch.zeros(1))]), torch.optim.AdamW)
    assert_same(ours, theirs, exact=True)


# -- state_dict -------------------------------------------------------------------------

ROUND_TRIP = [c for c in CONFIGS if c.implementation in ("default", "single")]


@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("config", ROUND_TRIP, ids=str)
def test_state_dict_round_trip(config: Config, decoupled: bool) -> None:
    scaling = "schedule" if decoupled else "lr"
    params0 = initial_params(torch.float32)
    make = _build(
        config.ours,
        config,
        COUPLED_DECAY,
        decoupled_weight_decay=decoupled,
        weight_decay_scaling=scaling,
    )
    params, optimizer = run(make, params0, steps=2)
    saved = copy.deepcopy(optimizer.state_dict())

    for group in saved["param_groups"]:
        assert group["decoupled_weight_decay"] is decoupled
        assert group["weight_decay_scaling"] == scaling
    _, torch_optimizer = run(_build(config.theirs, config, COUPLED_DECAY), params0, steps=2)
    assert _layout(saved) == _layout(torch_optimizer.state_dict())

    # A fresh optimizer built with the defaults takes every setting from the checkpoint.
    resumed_params = [nn.Parameter(p.detach().clone()) for p in params]
    resumed = _build(config.ours, config, 0.0)(resumed_params)
    resumed.load_state_dict(saved)
    assert resumed.state_dict()["param_groups"] == saved["param_groups"]
    for step in (2, 3):
        take_steps(optimizer, params, step)
        take_steps(resumed, resumed_params, step)
    assert_same(resumed_params, params, exact=True)


def _layout(state_dict: dict[str, Any]) -> tuple:
    """Keys and shapes of the state, and torch's keys of the groups (ours are extra)."""
    state = {
        index: {key: (type(v).__name__, tuple(getattr(v, "shape", ()))) for key, v in s.items()}
        for index, s in state_dict["state"].items()
    }
    ours = {
        "decoupled_weight_decay",
        "weight_decay_scaling",
        "cautious_weight_decay",
        "lr_ref",
        "fused",
        "foreach",
    }
    groups = [sorted(set(g) - ours) for g in state_dict["param_groups"]]
    return state, groups


# -- dtypes -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("implementation", ["single", "foreach", "default"])
@pytest.mark.parametrize("name", CLASSES)
def test_dtype_is_preserved(
    name: str, implementation: str, decoupled: bool, dtype: torch.dtype
) -> None:
    config = Config(
        name, {"lr": 0.01, **({"momentum": 0.9} if name != "Adam" else {})}, implementation
    )
    params0 = initial_params(dtype)
    params, optimizer = run(
        _build(config.ours, config, COUPLED_DECAY, decoupled_weight_decay=decoupled), params0
    )
    for p in params:
        assert p.dtype == dtype and torch.isfinite(p).all()
    assert not torch.equal(params[0].detach(), params0[0])
    for p, state in optimizer.state.items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key != "step":
                assert value.dtype == p.dtype, key
    if not decoupled:
        # Low precision rounds differently per kernel; only the maths is compared.
        theirs, _ = run(
            _build(config.theirs, Config(name, config.hyper, "single"), COUPLED_DECAY), params0
        )
        tolerance = {"rtol": 2e-2, "atol": 2e-2} if dtype == torch.bfloat16 else {}
        assert_same(params, theirs, exact=False, **tolerance)


# -- bad values: torch's errors ---------------------------------------------------------

BAD_VALUES = [
    ("SGD", {"lr": -0.1}),
    ("SGD", {"momentum": -0.5}),
    ("SGD", {"weight_decay": -1.0}),
    ("SGD", {"nesterov": True}),
    ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1}),
    ("SGD", {"foreach": True, "fused": True}),
    ("SGD", {"fused": True, "differentiable": True}),
    ("SGD", {"lr": torch.tensor([0.1, 0.2])}),
    ("Adam", {"lr": -1.0}),
    ("Adam", {"eps": -1e-8}),
    ("Adam", {"betas": (1.0, 0.999)}),
    ("Adam", {"betas": (0.9, -0.1)}),
    ("Adam", {"weight_decay": -0.1}),
    ("Adam", {"lr": torch.tensor(0.01), "foreach": True}),
    ("Adam", {"foreach": True, "fused": True}),
    ("Adam", {"fused": True, "differentiable": True}),
    ("RMSprop", {"lr": -1.0}),
    ("RMSprop", {"eps": -1.0}),
    ("RMSprop", {"momentum": -1.0}),
    ("RMSprop", {"alpha": -0.5}),
    ("RMSprop", {"weight_decay": -1.0}),
]


def _raised(make) -> tuple[type, str]:
    with pytest.raises(Exception) as info:
        make()
    return info.type, str(info.value)


@pytest.mark.parametrize("name, kwargs", BAD_VALUES, ids=str)
def test_bad_values_raise_torchs_errors(name: str, kwargs: dict[str, Any]) -> None:
    ours_cls, theirs_cls = CLASSES[name]
    params = [nn.Parameter(torch.zeros(2))]
    assert _raised(lambda: ours_cls(params, **kwargs)) == _raised(
        lambda: theirs_cls(params, **kwargs)
    )


@pytest.mark.parametrize("name", ["Adam", "RMSprop"])  # SGD has no capturable argument
def test_capturable_on_cpu_fails_as_in_torch(name: str) -> None:
    def step(cls: type) -> None:
        p = nn.Parameter(torch.zeros(2))
        p.grad = torch.ones(2)
        cls([p], capturable=True, foreach=False).step()

    ours_cls, theirs_cls = CLASSES[name]
    assert _raised(lambda: step(ours_cls)) == _raised(lambda: step(theirs_cls))


@pytest.mark.parametrize("name", CLASSES)
def test_signature_is_torchs_plus_two_keywords(name: str) -> None:
    ours_cls, theirs_cls = CLASSES[name]
    ours = inspect.signature(ours_cls).parameters
    theirs = inspect.signature(theirs_cls).parameters
    for arg, parameter in theirs.items():
        assert ours[arg].default == parameter.default, arg
        if parameter.kind is not inspect.Parameter.KEYWORD_ONLY:
            assert ours[arg].kind == parameter.kind, arg
    for arg in ("decoupled_weight_decay", "weight_decay_scaling"):
        assert ours[arg].kind is inspect.Parameter.KEYWORD_ONLY


# -- bad values: ours -------------------------------------------------------------------


@pytest.mark.parametrize("weight_decay", [-0.1, float("nan")])
@pytest.mark.parametrize("name", CLASSES)
def test_negative_or_nan_decay_names_it(name: str, weight_decay: float) -> None:
    cls = CLASSES[name][0]
    with pytest.raises(ValueError, match="weight_decay"):
        cls([nn.Parameter(torch.zeros(2))], weight_decay=weight_decay, decoupled_weight_decay=True)
    groups = [
        {"params": [nn.Parameter(torch.zeros(2))]},
        {"params": [nn.Parameter(torch.zeros(2))], "weight_decay": weight_decay},
    ]
    with pytest.raises(ValueError, match=r"weight_decay.*param group 1|Invalid weight_decay"):
        cls(groups)
    optimizer = cls([nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match="weight_decay"):
        optimizer.add_param_group(
            {"params": [nn.Parameter(torch.zeros(2))], "weight_decay": weight_decay}
        )
    assert len(optimizer.param_groups) == 1


@pytest.mark.parametrize(
    "entry",
    [{"cautious_weight_decay": 1}, {"weight_decay": "0.1"}, {"weight_decay": -0.1}],
    ids=str,
)
def test_a_refused_param_group_is_not_kept(entry: dict) -> None:
    """Whatever the refusal (TypeError or ValueError), the optimizer is as it was: the same
    parameter can be added again with the entry fixed."""
    optimizer = l2optim.AdamW([nn.Parameter(torch.zeros(2))], weight_decay=0.1)
    head = nn.Parameter(torch.ones(2))
    with pytest.raises((TypeError, ValueError)):
        optimizer.add_param_group({"params": [head], **entry})
    assert len(optimizer.param_groups) == 1
    optimizer.add_param_group({"params": [head]})
    assert len(optimizer.param_groups) == 2


@pytest.mark.parametrize("name", CLASSES)
def test_unknown_scaling_lists_allowed_values(name: str) -> None:
    cls = CLASSES[name][0]
    with pytest.raises(ValueError, match="weight_decay_scaling.*'lr', 'schedule', 'corrected', 'none'"):
        cls(
            [nn.Parameter(torch.zeros(2))],
            decoupled_weight_decay=True,
            weight_decay_scaling="epoch",
        )
    with pytest.raises(ValueError, match="'lr', 'schedule', 'corrected', 'none'"):
        cls(
            [{"params": [nn.Parameter(torch.zeros(2))], "weight_decay_scaling": "epoch"}],
            decoupled_weight_decay=True,
        )


@pytest.mark.parametrize("scaling", ["schedule", "none"])
@pytest.mark.parametrize("name", CLASSES)
def test_scaling_with_coupled_decay_is_refused(name: str, scaling: str) -> None:
    cls = CLASSES[name][0]
    with pytest.raises(ValueError, match="decoupled_weight_decay=True"):
        cls([nn.Parameter(torch.zeros(2))], weight_decay=0.1, weight_decay_scaling=scaling)


@pytest.mark.parametrize("implementation", ["single", "foreach", "fused", "default"])
@pytest.mark.parametrize("name", CLASSES)
def test_sign_flipping_decay_changes_nothing(name: str, implementation: str) -> None:
    """1 − s·λ ≤ 0 in the second group: the error names it, and no parameter moved."""
    config = Config(
        name, {"lr": 0.1, "momentum": 0.9} if name != "Adam" else {"lr": 0.1}, implementation
    )
    params = [nn.Parameter(p) for p in initial_params()]
    groups = [
        {"params": params[:1], "weight_decay": 0.5},
        {"params": params[1:], "weight_decay": 0.5},
    ]
    optimizer = config.ours(groups, **config.kwargs(decoupled_weight_decay=True))
    take_steps(optimizer, params, 0)
    optimizer.param_groups[1]["weight_decay"] = 20.0
    before = [p.detach().clone() for p in params]
    state_before = copy.deepcopy(optimizer.state_dict())
    with pytest.raises(ValueError, match=r"param group 1.*lr = 0\.1.*weight_decay=20"):
        take_steps(optimizer, params, 1)
    assert_same(params, before, exact=True)
    assert tensors_equal(optimizer.state_dict()["state"], state_before["state"])


def test_schedule_scaling_follows_a_scheduler_on_a_tensor_lr() -> None:
    # lr_ref must be a copy: schedulers write a tensor lr in place.
    p = nn.Parameter(torch.ones(1, dtype=torch.float64))
    lr = torch.tensor(0.1, dtype=torch.float64)
    optimizer = l2optim.SGD(
        [p],
        lr=lr,
        weight_decay=0.5,
        foreach=False,
        decoupled_weight_decay=True,
        weight_decay_scaling="schedule",
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.5)
    expected = 1.0
    for step in range(3):
        p.grad = torch.zeros(1, dtype=torch.float64)
        optimizer.step()
        scheduler.step()
        expected *= 1 - 0.5 * 0.5**step
    assert as_float(p.detach()) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("implementation", ["single", "foreach", "fused"])
@pytest.mark.parametrize("decoupled", [False, True])
def test_tensor_weight_decay(decoupled: bool, implementation: str) -> None:
    """torch.optim.SGD takes λ as a tensor; both forms accept it too."""
    config = Config("SGD", {"lr": 0.1, "momentum": 0.9}, implementation)
    params0 = initial_params(torch.float64)

    def make(cls: type, **extra: Any):
        return lambda p: cls(
            p, weight_decay=torch.tensor(0.2, dtype=torch.float64), **config.kwargs(**extra)
        )

    ours, optimizer = run(make(config.ours, decoupled_weight_decay=decoupled), params0)
    if decoupled:
        expected = reference_run("SGD", optimizer.param_groups, params0, decoupled=True)
    else:
        expected, _ = run(make(config.theirs), params0)
    assert_same(ours, expected, exact=False, rtol=1e-10, atol=1e-12)


# -- the reference lr of the "schedule" scaling -------------------------------------------


def _schedule_run(make_scheduler, steps: int, **group_extra: Any) -> tuple[float, float]:
    """A weight with zero gradient under decoupled "schedule" decay: (weight, oracle).

    The oracle is the product of 1 − λ·lr_t/lr_ref over the lrs the group actually had,
    lr_ref being the lr the group was created with (or what it was given).
    """
    p = nn.Parameter(torch.ones(1, dtype=torch.float64))
    group = {"params": [p], **group_extra}
    optimizer = l2optim.SGDW(
        [group], lr=0.1, weight_decay=0.01, weight_decay_scaling="schedule", foreach=False
    )
    lr_ref = group_extra.get("lr_ref", 0.1)
    scheduler = make_scheduler(optimizer)
    expected = 1.0
    for _ in range(steps):
        lr = optimizer.param_groups[0]["lr"]
        p.grad = torch.zeros_like(p)
        optimizer.step()
        expected *= 1 - 0.01 * lr / lr_ref
        scheduler.step()
    return float(p), expected


@pytest.mark.parametrize(
    "make_scheduler",
    [
        # OneCycleLR writes max_lr/div_factor into initial_lr; the decay must not follow it.
        lambda opt: torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=20),
        lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20),
        # As SWA and LR finders do: someone else writes initial_lr.
        lambda opt: _overwrite_initial_lr(opt, 1e-8),
    ],
    ids=["OneCycleLR", "CosineAnnealingLR", "foreign-initial_lr"],
)
def test_schedule_scaling_is_relative_to_the_lr_the_group_was_created_with(make_scheduler):
    weight, expected = _schedule_run(make_scheduler, 20)
    assert weight == pytest.approx(expected, rel=1e-12)


def test_a_group_can_set_its_own_reference_lr():
    weight, expected = _schedule_run(
        lambda opt: torch.optim.lr_scheduler.StepLR(opt, 5, 0.5), 10, lr_ref=0.05
    )
    assert weight == pytest.approx(expected, rel=1e-12)


def _overwrite_initial_lr(optimizer, value: float):
    for group in optimizer.param_groups:
        group["initial_lr"] = value
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)


def test_the_reference_lr_is_saved_and_restored():
    p = nn.Parameter(torch.ones(2))
    optimizer = l2optim.SGDW([p], lr=0.1, weight_decay=0.1, weight_decay_scaling="schedule")
    optimizer.param_groups[0]["lr"] = 0.02
    saved = optimizer.state_dict()
    assert saved["param_groups"][0]["lr_ref"] == 0.1
    resumed = l2optim.SGDW([p], lr=0.5, weight_decay=0.1, weight_decay_scaling="schedule")
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["lr_ref"] == 0.1


@pytest.mark.parametrize(
    ("saved_extra", "expected"),
    [({"initial_lr": 0.2}, 0.2), ({}, 0.05)],
    ids=["older-l2optim-initial_lr", "torch-checkpoint"],
)
def test_a_checkpoint_without_a_reference_lr_takes_the_best_guess(saved_extra, expected):
    """An older l2optim kept the reference in initial_lr; without it, the current lr."""
    p = nn.Parameter(torch.ones(2))
    torch_optimizer = torch.optim.SGD([p], lr=0.05, weight_decay=0.1)
    saved = torch_optimizer.state_dict()
    saved["param_groups"][0].update(saved_extra)
    resumed = l2optim.SGDW([p], lr=0.5, weight_decay=0.1, weight_decay_scaling="schedule")
    resumed.load_state_dict(saved)
    assert resumed.param_groups[0]["lr_ref"] == expected


@pytest.mark.parametrize("lr_ref", [0.0, -0.1, float("nan")], ids=str)
def test_a_bad_reference_lr_is_named(lr_ref: float):
    p = nn.Parameter(torch.ones(2))
    with pytest.raises(ValueError, match=r"Invalid lr_ref in param group 0 value: .* \(must be a finite number > 0\)"):
        l2optim.SGDW(
            [{"params": [p], "lr_ref": lr_ref}],
            lr=0.1,
            weight_decay=0.1,
            weight_decay_scaling="schedule",
        )


def test_a_tiny_reference_lr_is_named_as_the_cause():
    """Lightning's LR finder used to leave 1e-8 behind; the error says where s comes from."""
    p = nn.Parameter(torch.ones(2))
    optimizer = l2optim.SGDW(
        [{"params": [p], "lr_ref": 1e-8}], lr=0.1, weight_decay=0.1, weight_decay_scaling="schedule"
    )
    p.grad = torch.zeros_like(p)
    with pytest.raises(ValueError, match=r"s = lr / lr_ref = 0\.1 / 1e-08.*raise lr_ref"):
        optimizer.step()
    assert torch.equal(p.detach(), torch.ones(2))


@pytest.mark.parametrize("implementation", ["single", "foreach", "fused", "default"])
@pytest.mark.parametrize("name", CLASSES)
def test_decay_of_exactly_one_is_refused(name: str, implementation: str) -> None:
    """s·λ = 1 exactly (lr = 0.5, λ = 2) would zero every weight: refused, nothing moves."""
    config = Config(name, {"lr": 0.5}, implementation)
    params = [nn.Parameter(p) for p in initial_params()]
    optimizer = config.ours(params, weight_decay=2.0, **config.kwargs(decoupled_weight_decay=True))
    before = [p.detach().clone() for p in params]
    with pytest.raises(ValueError, match=r"1 - s\*weight_decay = 0 <= 0"):
        take_steps(optimizer, params, 0)
    assert_same(params, before, exact=True)
    assert not optimizer.state


# -- "schedule" with an lr that rises above lr_ref -------------------------------------------


def _one_cycle_run(scaling: str, *, lr_ref: float | None = None, steps: int = 40) -> list:
    """AdamW built at lr=1e-3 under OneCycleLR(max_lr=1e-2), as a user switching over writes
    it; the warnings its steps give."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 1))
    groups = l2optim.decay_groups(model, 0.05)
    opt = l2optim.AdamW(groups, lr=1e-3, weight_decay_scaling=scaling)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=steps)
    if lr_ref is not None:
        for group in opt.param_groups:
            group["lr_ref"] = lr_ref
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(steps):
            opt.zero_grad()
            model(torch.randn(8, 4)).pow(2).mean().backward()
            opt.step()
            schedule.step()
    return [w for w in caught if issubclass(w.category, l2optim.LrAboveReferenceWarning)]


@pytest.mark.parametrize(
    ("scaling", "per_step"),
    [("schedule", "(lr / lr_ref) * weight_decay"), ("corrected", "lr * (lr / lr_ref) * weight_decay")],
)
def test_scalings_with_lr_ref_warn_once_per_group_when_the_lr_rises_above_it(scaling, per_step):
    caught = _one_cycle_run(scaling)
    # Only the decayed group decays; it is warned once, at the step that crossed 2·lr_ref.
    assert len(caught) == 1
    message = str(caught[0].message)
    lr = float(message.split("lr = ")[1].split(" ")[0])
    assert message.startswith("param group 0: lr = 0.002")
    ratio = lr / 1e-3
    # "corrected" decays by (lr/lr_ref)² times its decay at lr_ref.
    times = ratio if scaling == "schedule" else ratio**2
    assert f"decays the weights by {per_step}, here {times:.3g} times" in message
    assert "lr_ref = 0.001" in message and "weight_decay = 0.05" in message
    assert "param_group['lr_ref'] = param_group['max_lr'] = 0.01" in message
    assert caught[0].filename == __file__  # the user's opt.step(), not l2optim's internals


@pytest.mark.parametrize(
    ("scaling", "lr_ref"), [("schedule", 1e-2), ("corrected", 1e-2), ("lr", None), ("none", None)]
)
def test_no_lr_ref_warning_where_the_decay_is_what_was_asked(scaling, lr_ref):
    # lr_ref at the peak, or a scaling that does not read lr_ref.
    assert _one_cycle_run(scaling, lr_ref=lr_ref) == []
