"""Each assumption l2optim/_compat.py makes about torch's private names, checked.

When a torch release changes one of them, the test named after it fails here, with the
name of what moved, rather than somewhere deep in an optimizer step.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from l2optim import _compat


def test_foreach_kernels_do_what_their_names_say() -> None:
    xs, ys = [torch.tensor([1.0, 2.0]), torch.tensor([3.0])], [torch.tensor([1.0, 1.0]),
                                                                torch.tensor([2.0])]
    assert [t.tolist() for t in _compat.foreach_add(xs, ys, alpha=2.0)] == [[3.0, 4.0], [7.0]]
    assert [t.tolist() for t in _compat.foreach_mul(xs, 2.0)] == [[2.0, 4.0], [6.0]]
    assert [t.tolist() for t in _compat.foreach_div(xs, torch.tensor(2.0))] == [[0.5, 1.0], [1.5]]
    _compat.foreach_mul_(xs, torch.tensor(3.0))
    assert [t.tolist() for t in xs] == [[3.0, 6.0], [9.0]]


@pytest.mark.parametrize(
    ("functional", "keywords"),
    [
        (_compat.functional_sgd, {"foreach", "weight_decay", "momentum", "lr", "dampening",
                                  "nesterov", "maximize"}),
        (_compat.functional_rmsprop, {"foreach", "maximize", "capturable", "lr", "alpha", "eps",
                                      "weight_decay", "momentum", "centered"}),
    ],
    ids=["sgd", "rmsprop"],
)
def test_functional_updates_take_the_keywords_we_pass(functional, keywords) -> None:
    assert keywords <= set(inspect.signature(functional).parameters)


def test_functional_sgd_is_torchs_update() -> None:
    p, reference = torch.ones(3), torch.ones(3)
    buffers: list[torch.Tensor | None] = [None]
    _compat.functional_sgd([p], [torch.full((3,), 0.5)], buffers, foreach=True,
                           weight_decay=0.0, momentum=0.9, lr=0.1, dampening=0.0,
                           nesterov=False, maximize=False)
    optimizer = torch.optim.SGD([nn.Parameter(reference)], lr=0.1, momentum=0.9)
    optimizer.param_groups[0]["params"][0].grad = torch.full((3,), 0.5)
    optimizer.step()
    assert torch.equal(p, optimizer.param_groups[0]["params"][0].detach())
    assert buffers[0] is not None


def test_norm_base_is_the_base_of_torchs_batch_and_instance_norms() -> None:
    for layer in (nn.BatchNorm1d(2), nn.BatchNorm2d(2), nn.InstanceNorm1d(2), nn.SyncBatchNorm(2)):
        assert isinstance(layer, _compat.NORM_BASE)
    assert not isinstance(nn.Linear(2, 2), _compat.NORM_BASE)


def test_fused_kernel_devices_include_cpu_and_cuda() -> None:
    assert {"cpu", "cuda"} <= set(_compat.fused_kernel_devices())


def test_default_foreach_is_torchs_choice() -> None:
    cpu = [torch.zeros(2)]
    assert _compat.default_foreach(cpu, differentiable=False) is False  # torch: loop on CPU
    assert _compat.default_foreach(cpu, differentiable=True) is False


def test_gradscaler_hands_over_scale_and_flag_to_a_step_that_unscales() -> None:
    """GradScaler reads ``_step_supports_amp_scaling`` and sets the two attributes we read."""
    p = nn.Parameter(torch.ones(2))
    seen = []

    class Recording(torch.optim.SGD):
        def step(self, closure=None):
            seen.append(_compat.gradscaler_handoff(self))

    optimizer = Recording([p], lr=0.1)
    assert not _compat.step_unscales(optimizer)
    _compat.set_step_unscales(optimizer, True)
    assert _compat.step_unscales(optimizer)
    assert optimizer._step_supports_amp_scaling is True
    scaler = torch.amp.GradScaler("cpu", init_scale=4.0)
    scaler.scale(p.sum()).backward()
    scaler.step(optimizer)
    (grad_scale, found_inf), = seen
    assert float(grad_scale) == 4.0 and float(found_inf) == 0.0
    assert _compat.gradscaler_handoff(optimizer) == (None, None)  # removed after the step


def test_step_body_is_the_update_under_torchs_wrappers() -> None:
    torch.optim.Adam([nn.Parameter(torch.ones(1))])  # torch wraps Adam.step on first use
    assert getattr(torch.optim.Adam.step, "hooked", False)
    body = _compat.step_body(torch.optim.Adam)
    assert not getattr(body, "hooked", False)
    assert body.__code__ is not _compat._USE_GRAD_CODE
    assert body.__qualname__ == "Adam.step"


def test_step_body_runs_no_hooks() -> None:
    p = nn.Parameter(torch.ones(2))
    optimizer = torch.optim.SGD([p], lr=0.1)
    calls = []
    optimizer.register_step_pre_hook(lambda *args: calls.append("pre"))
    p.grad = torch.ones(2)
    with torch.no_grad():
        _compat.step_body(torch.optim.SGD)(optimizer)
    assert calls == [] and torch.equal(p.detach(), torch.full((2,), 0.9))


def test_grad_mode_step_turns_grad_off_unless_differentiable() -> None:
    modes = []

    @_compat.grad_mode_step
    def step(self):
        modes.append(torch.is_grad_enabled())

    class Plain:
        defaults: dict = {}

    class Differentiable:
        defaults = {"differentiable": True}

    step(Plain())
    step(Differentiable())
    assert modes == [False, True] and torch.is_grad_enabled()


def test_dask_client_of_finds_the_client_behind_its_executor() -> None:
    distributed = pytest.importorskip("distributed")
    assert _compat.dask_client_of(object()) is None
    with distributed.Client(
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None
    ) as client:
        assert _compat.dask_client_of(client) is client
        assert _compat.dask_client_of(client.get_executor()) is client
