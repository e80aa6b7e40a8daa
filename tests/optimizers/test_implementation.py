"""The default implementation (l2optim/_implementation.py), and optimizers that are copied.

A default constructor must look to the world exactly like torch's default constructor
(frameworks read ``_step_supports_amp_scaling`` and the groups' ``fused``), while running
torch's fused kernel underneath where that is faster. And a pickled, deep-copied or
reloaded optimizer is the same optimizer: it continues bit for bit.
"""

from __future__ import annotations

import copy
import importlib
import io
import pickle
from collections.abc import Callable

import pytest
import torch
from _counting import count_calls
from torch import nn
from torch._dynamo.utils import counters

import l2optim
from l2optim.optimizers import _implementation

LARGE = _implementation.CPU_FUSED_MIN_NUMEL
# torch.optim's modules of functional updates (the package hides them behind the classes).
SGD_MODULE = importlib.import_module("torch.optim.sgd")
ADAM_MODULE = importlib.import_module("torch.optim.adam")
# (l2optim class, torch class, arguments of both) for each mode with a torch fused kernel.
FUSED_MODES = {
    "sgd-momentum": (l2optim.SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    "sgd-decoupled": (
        l2optim.SGDW,
        torch.optim.SGD,
        {"lr": 0.1},  # without momentum, decoupled SGD is torch's coupled update
    ),
    "adam": (l2optim.Adam, torch.optim.Adam, {"lr": 0.01}),
    "adamw": (l2optim.AdamW, torch.optim.AdamW, {"lr": 0.01}),
}


def _params(sizes: list[int], seed: int = 0) -> list[nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [nn.Parameter(torch.randn(n, generator=generator)) for n in sizes]


def _steps(optimizer: torch.optim.Optimizer, params: list[nn.Parameter], steps: int, start=0):
    for step in range(start, start + steps):
        generator = torch.Generator().manual_seed(100 + step)
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
        optimizer.step()


ALL_CLASSES = [l2optim.SGD, l2optim.SGDW, l2optim.Adam, l2optim.AdamW, l2optim.RMSprop,
               l2optim.RMSpropW]


def _count_fused(monkeypatch, torch_cls: type) -> list[int]:
    if issubclass(torch_cls, torch.optim.SGD):
        return count_calls(monkeypatch, SGD_MODULE, "_fused_sgd")
    return count_calls(monkeypatch, ADAM_MODULE, "_fused_adam")


@pytest.mark.parametrize("cls", ALL_CLASSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("sizes", [[3, 5], [LARGE, LARGE]], ids=["small", "large"])
def test_default_constructor_looks_like_torchs(cls: type, sizes: list[int]) -> None:
    torch_cls = next(c for c in cls.__mro__ if c.__module__.startswith("torch.optim"))
    optimizer = cls(_params(sizes), lr=0.01)
    theirs = torch_cls(_params(sizes), lr=0.01)
    _steps(optimizer, optimizer.param_groups[0]["params"], 1)
    assert getattr(optimizer, "_step_supports_amp_scaling", False) is False
    ours = {
        "params",
        "decoupled_weight_decay",
        "weight_decay_scaling",
        "cautious_weight_decay",
        "lr_ref",
        "fused",
    }
    for group, torch_group in zip(
        optimizer.state_dict()["param_groups"], theirs.state_dict()["param_groups"], strict=True
    ):
        assert group["fused"] is None and group["foreach"] is None
        assert {k: v for k, v in group.items() if k not in ours} == {
            k: v for k, v in torch_group.items() if k not in ours
        }


@pytest.mark.parametrize("mode", FUSED_MODES)
def test_default_runs_torchs_fused_kernel_on_large_cpu_tensors(mode: str, monkeypatch) -> None:
    ours_cls, torch_cls, kwargs = FUSED_MODES[mode]
    fused_calls = _count_fused(monkeypatch, torch_cls)
    weight_decay = {"weight_decay": 0.1}
    ours, theirs = _params([LARGE, LARGE + 3]), _params([LARGE, LARGE + 3])
    ours_opt = ours_cls(ours, **kwargs, **weight_decay)
    theirs_opt = torch_cls(theirs, **kwargs, **weight_decay, fused=True)
    _steps(ours_opt, ours, 3)
    _steps(theirs_opt, theirs, 3)
    assert fused_calls[0] == 6
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("mode", FUSED_MODES)
def test_default_is_torchs_default_on_small_cpu_tensors(mode: str, monkeypatch) -> None:
    ours_cls, torch_cls, kwargs = FUSED_MODES[mode]
    fused_calls = _count_fused(monkeypatch, torch_cls)
    # One large tensor is not enough: every tensor of the group must be large.
    sizes = [LARGE, 7, 1]
    ours, theirs = _params(sizes), _params(sizes)
    ours_opt = ours_cls(ours, **kwargs, weight_decay=0.1)
    theirs_opt = torch_cls(theirs, **kwargs, weight_decay=0.1)
    _steps(ours_opt, ours, 3)
    _steps(theirs_opt, theirs, 3)
    assert fused_calls[0] == 0
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)


RMSPROP_MODULE = importlib.import_module("torch.optim.rmsprop")
# The multi-tensor update of each base class, and torch's class for the same maths.
MULTI_TENSOR = {
    l2optim.SGD: (SGD_MODULE, "_multi_tensor_sgd", torch.optim.SGD, {"momentum": 0.9}),
    l2optim.SGDW: (SGD_MODULE, "_multi_tensor_sgd", torch.optim.SGD, {"momentum": 0.0}),
    l2optim.Adam: (ADAM_MODULE, "_multi_tensor_adam", torch.optim.Adam, {}),
    l2optim.AdamW: (ADAM_MODULE, "_multi_tensor_adam", torch.optim.AdamW, {}),
    l2optim.RMSprop: (RMSPROP_MODULE, "_multi_tensor_rmsprop", torch.optim.RMSprop, {}),
}
SMALL = _implementation.CPU_FOREACH_MAX_NUMEL


@pytest.mark.parametrize(
    ("sizes", "dtype", "foreach"),
    [
        ([SMALL, 7, 1], torch.float32, True),
        ([3, 5], torch.float64, True),
        ([SMALL + 1, 7, 1], torch.float32, False),  # one tensor past the crossover
        ([3, 5], torch.bfloat16, False),  # foreach rounds otherwise in bfloat16
    ],
    ids=["small", "small-float64", "one-mid-size", "bfloat16"],
)
@pytest.mark.parametrize("cls", list(MULTI_TENSOR), ids=lambda c: c.__name__)
def test_small_cpu_tensors_take_the_foreach_update_with_torchs_numbers(
    cls, sizes, dtype, foreach, monkeypatch
) -> None:
    module, name, torch_cls, kwargs = MULTI_TENSOR[cls]
    calls = count_calls(monkeypatch, module, name)
    ours = [nn.Parameter(p.detach().to(dtype)) for p in _params(sizes)]
    theirs = [nn.Parameter(p.detach().to(dtype)) for p in _params(sizes)]
    ours_opt = cls(ours, lr=0.01, weight_decay=0.1, **kwargs)
    theirs_opt = torch_cls(theirs, lr=0.01, weight_decay=0.1, **kwargs)
    for step in range(3):
        generator = torch.Generator().manual_seed(100 + step)
        for a, b in zip(ours, theirs, strict=True):
            a.grad = torch.randn(a.shape, generator=generator).to(dtype)
            b.grad = a.grad.clone()
        ours_opt.step()
        theirs_opt.step()  # torch's CPU default: the per-tensor loop
    assert calls[0] == (3 if foreach else 0)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
    assert ours_opt.param_groups[0]["foreach"] is None


def test_adam_with_a_tensor_lr_keeps_torchs_loop(monkeypatch) -> None:
    """torch's foreach Adam refuses a tensor lr unless capturable: the default must not pick it."""
    calls = count_calls(monkeypatch, ADAM_MODULE, "_multi_tensor_adam")
    params = _params([3, 5])
    optimizer = l2optim.AdamW(params, lr=torch.tensor(0.01), weight_decay=0.1)
    _steps(optimizer, params, 2)
    assert calls[0] == 0


GRADIENT_CASES = [
    (l2optim.SGD, {"momentum": 0.9, "nesterov": True}),
    (l2optim.SGDW, {"momentum": 0.9, "nesterov": True}),
    (l2optim.SGDW, {"momentum": 0.9, "dampening": 0.5, "maximize": True}),
    (l2optim.SGD, {"momentum": 0.9}),
    (l2optim.AdamW, {"maximize": True}),
    (l2optim.Adam, {"amsgrad": True}),
    (l2optim.RMSpropW, {"momentum": 0.9, "centered": True}),
]


@pytest.mark.parametrize("sizes", [[3, 5], [LARGE, 2]], ids=["small", "mixed"])
@pytest.mark.parametrize(
    ("cls", "kwargs"), GRADIENT_CASES, ids=lambda v: getattr(v, "__name__", str(v))
)
def test_the_default_step_leaves_the_gradients_alone(cls, kwargs, sizes) -> None:
    """As torch's default does: code that reads p.grad after step() sees what it wrote."""
    params = _params(sizes)
    optimizer = cls(params, lr=0.1, weight_decay=0.1, **kwargs)
    for step in range(3):  # the first step makes the buffers, the later ones use them
        generator = torch.Generator().manual_seed(step)
        grads = [torch.randn(p.shape, generator=generator) for p in params]
        for p, g in zip(params, grads, strict=True):
            p.grad = g.clone()
        optimizer.step()
        for p, g in zip(params, grads, strict=True):
            assert torch.equal(p.grad, g)


@pytest.mark.parametrize(
    "impl", [{"foreach": True}, {"foreach": False}, {"fused": False}, {"differentiable": True}]
)
def test_an_explicit_choice_wins(impl: dict, monkeypatch) -> None:
    fused_calls = _count_fused(monkeypatch, torch.optim.Adam)
    params = _params([LARGE])
    optimizer = l2optim.Adam(params, lr=0.01, **impl)
    assert not optimizer.param_groups[0]["fused"]
    assert not getattr(optimizer, "_step_supports_amp_scaling", False)
    if not impl.get("differentiable"):
        _steps(optimizer, params, 1)
        assert fused_calls[0] == 0


def test_fused_kernel_supports_only_plain_dense_floats() -> None:
    supports = _implementation.fused_kernel_supports
    assert supports([torch.zeros(3), nn.Parameter(torch.zeros(2))])
    assert not supports([])
    assert not supports([torch.zeros(3, dtype=torch.complex64)])
    assert not supports([torch.zeros(3, dtype=torch.int64)])
    assert not supports([torch.zeros(3).to_sparse()])
    complex_param = nn.Parameter(torch.randn(LARGE, dtype=torch.complex64))
    assert not _implementation.prefers_fused_kernel([complex_param])


# -- copies of an optimizer continue bit for bit -------------------------------------------

COPIES: dict[str, Callable] = {
    "pickle": lambda pair: pickle.loads(pickle.dumps(pair)),
    "deepcopy": copy.deepcopy,
    "torch.save": lambda pair: _torch_round_trip(pair),
}


def _torch_round_trip(pair):
    buffer = io.BytesIO()
    torch.save(pair, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=False)


COPIED = [
    (l2optim.SGDW, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1}),
    (l2optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    (l2optim.AdamW, {"lr": 0.01}),
    (l2optim.RMSpropW, {"lr": 0.01, "weight_decay": 0.1, "momentum": 0.5}),
    (
        l2optim.SGDW,
        {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1, "weight_decay_scaling": "schedule"},
    ),
    (l2optim.with_weight_decay(torch.optim.Adagrad), {"lr": 0.1, "weight_decay": 0.1}),
]


@pytest.mark.parametrize("sizes", [[3, 5], [LARGE, LARGE]], ids=["small", "large"])
@pytest.mark.parametrize("how", COPIES)
@pytest.mark.parametrize(("cls", "kwargs"), COPIED, ids=lambda v: getattr(v, "__name__", ""))
def test_a_copied_optimizer_continues_bit_for_bit(cls, kwargs, how: str, sizes) -> None:
    params = _params(sizes)
    optimizer = cls(params, **kwargs)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    _steps(optimizer, params, 2)
    scheduler.step()
    copied_params, copied = COPIES[how]((params, optimizer))
    assert type(copied) is type(optimizer)
    graphs = counters["stats"]["unique_graphs"]
    _steps(optimizer, params, 3, start=2)
    _steps(copied, copied_params, 3, start=2)
    for a, b in zip(params, copied_params, strict=True):
        assert torch.equal(a, b)
    # The default never compiles anything, before or after the copy.
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.parametrize(("cls", "kwargs"), COPIED, ids=lambda v: getattr(v, "__name__", ""))
def test_a_reloaded_optimizer_continues_bit_for_bit(cls, kwargs) -> None:
    params = _params([LARGE, 3])
    optimizer = cls(params, **kwargs)
    _steps(optimizer, params, 2)
    resumed_params = [nn.Parameter(p.detach().clone()) for p in params]
    resumed = cls(resumed_params, **kwargs)
    resumed.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    _steps(optimizer, params, 3, start=2)
    _steps(resumed, resumed_params, 3, start=2)
    for a, b in zip(params, resumed_params, strict=True):
        assert torch.equal(a, b)


def test_with_weight_decay_classes_pickle_as_their_base() -> None:
    adagrad_w = l2optim.with_weight_decay(torch.optim.Adagrad)
    assert adagrad_w is l2optim.with_weight_decay(torch.optim.Adagrad)
    assert pickle.loads(pickle.dumps(adagrad_w)) is adagrad_w
    assert copy.deepcopy(adagrad_w) is adagrad_w
