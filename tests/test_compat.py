"""Each assumption l2optim/_compat.py makes about torch's private names, checked.

When a torch release changes one of them, the test named after it fails here, with the
name of what moved, rather than somewhere deep in an optimizer step.
"""

from __future__ import annotations

import inspect
import json

import pytest
import torch
from torch import nn
from torch.optim import optimizer as _optimizer

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


def _update(self, closure=None):
    """A plain update, with a record of the grad mode it ran in."""
    self.modes.append(torch.is_grad_enabled())
    with torch.no_grad():
        for group in self.param_groups:
            for p in group["params"]:
                p.sub_(p.grad, alpha=0.1)
    return None if closure is None else closure()


class _Base(torch.optim.Optimizer):
    def __init__(self, params, **defaults):
        super().__init__(params, defaults)
        self.modes = []


class _TorchWrapped(_Base):
    """The update wrapped as torch wraps its own optimizers' steps."""

    step = _optimizer._use_grad_for_differentiable(_update)


class _OurWrapped(_Base):
    step = _compat.hooked_step(_update)


class _Overriding(_OurWrapped):
    """A user's subclass whose own step calls ours."""

    def step(self, closure=None):
        return super().step(closure)


def test_hooked_step_is_not_wrapped_by_torch() -> None:
    _OurWrapped([nn.Parameter(torch.ones(1))])
    assert _OurWrapped.step.hooked and _OurWrapped.step.__wrapped__ is _update
    _TorchWrapped([nn.Parameter(torch.ones(1))])  # torch wraps on first use
    assert _TorchWrapped.step.__wrapped__ is not _update


def _steps_with_hooks(cls: type, **defaults) -> tuple[list, torch.optim.Optimizer]:
    """Three steps of ``cls`` under every kind of step hook; what each hook saw, in order."""
    p = nn.Parameter(torch.ones(2))
    optimizer = cls([p], **defaults)
    calls = []

    def hook(name):
        def record(opt, args, kwargs):
            calls.append(
                (name, opt is optimizer, len(args), args[0] is optimizer, sorted(kwargs),
                 torch.is_grad_enabled(), p[0].item())
            )

        return record

    def swap_closure(opt, args, kwargs):
        if kwargs.get("closure") is not None:
            return args, {"closure": lambda: "from the hook"}
        return None

    handles = [
        _optimizer.register_optimizer_step_pre_hook(hook("global pre")),
        _optimizer.register_optimizer_step_post_hook(hook("global post")),
        optimizer.register_step_pre_hook(hook("pre")),
        optimizer.register_step_pre_hook(swap_closure),
        optimizer.register_step_post_hook(hook("post")),
    ]
    optimizer._optimizer_step_code = lambda: calls.append("step code")
    try:
        p.grad = torch.ones(2)
        calls.append(optimizer.step())
        calls.append(optimizer.step(lambda: "positional"))
        calls.append(optimizer.step(closure=lambda: "keyword"))
    finally:
        for handle in handles:
            handle.remove()
    return calls, optimizer


@pytest.mark.parametrize("differentiable", [False, True])
def test_hooked_step_runs_hooks_and_grad_mode_as_torch(differentiable: bool) -> None:
    ours, optimizer = _steps_with_hooks(_OurWrapped, differentiable=differentiable)
    theirs, _ = _steps_with_hooks(_TorchWrapped, differentiable=differentiable)
    assert ours == theirs
    assert "from the hook" in ours and ours.count("step code") == 3
    assert optimizer.modes == [differentiable] * 3 and torch.is_grad_enabled()


def test_hooked_step_counts_an_optimizer_without_differentiable_as_not() -> None:
    _, optimizer = _steps_with_hooks(_OurWrapped)
    assert optimizer.modes == [False] * 3


@pytest.mark.parametrize("cls", [_OurWrapped, _TorchWrapped])
def test_a_pre_hook_returning_anything_else_is_refused_as_by_torch(cls: type) -> None:
    p = nn.Parameter(torch.ones(2))
    optimizer = cls([p], differentiable=False)
    optimizer.register_step_pre_hook(lambda *args: "not a pair")
    p.grad = torch.ones(2)
    with pytest.raises(RuntimeError, match=r"must return None or a tuple of \(new_args, new_kw"):
        optimizer.step()
    assert torch.equal(p.detach(), torch.ones(2))


def test_a_subclass_that_overrides_the_step_runs_the_hooks_once() -> None:
    calls, optimizer = _steps_with_hooks(_Overriding, differentiable=False)
    assert [c[0] for c in calls if isinstance(c, tuple)].count("pre") == 3
    assert calls.count("step code") == 3 and len(optimizer.modes) == 3


def _profiled_steps(cls: type, profile) -> list[tuple[str, bool]]:
    p = nn.Parameter(torch.ones(2))
    optimizer = cls([p], differentiable=False)
    p.grad = torch.ones(2)
    optimizer.step()  # not profiled
    with profile() as prof:
        optimizer.step()
    events = prof.events() if hasattr(prof, "events") else prof.function_events
    return [
        (e.name.replace(cls.__name__, "<class>"), e.is_user_annotation)
        for e in events
        if e.name.startswith("Optimizer.step")
    ]


@pytest.mark.parametrize(
    "profile", [torch.profiler.profile, torch.autograd.profiler.profile], ids=["kineto", "legacy"]
)
def test_the_profiler_sees_the_step_as_torchs(profile) -> None:
    ours = _profiled_steps(_OurWrapped, profile)
    assert ours == _profiled_steps(_TorchWrapped, profile)
    assert ours == [("Optimizer.step#<class>.step", True)]


def _traced_step_names(cls: type, path) -> list[str]:
    """The names an execution trace (without the profiler) records for one step."""
    p = nn.Parameter(torch.ones(2))
    optimizer = cls([p], differentiable=False)
    p.grad = torch.ones(2)
    observer = torch.profiler.ExecutionTraceObserver().register_callback(str(path))
    try:
        observer.start()
        optimizer.step()
        observer.stop()
    finally:
        observer.unregister_callback()
    return [n["name"] for n in json.loads(path.read_text())["nodes"]]


def test_an_execution_trace_without_the_profiler_misses_the_range(tmp_path) -> None:
    """What the migrating page says: the range opens only while torch's profiler runs."""
    theirs = _traced_step_names(_TorchWrapped, tmp_path / "torch.json")
    ours = _traced_step_names(_OurWrapped, tmp_path / "ours.json")
    assert "Optimizer.step#_TorchWrapped.step" in theirs
    assert not [name for name in ours if name.startswith("Optimizer.step")]
    assert "aten::sub_" in ours  # the update's own operations are recorded


def test_dask_client_of_finds_the_client_behind_its_executor() -> None:
    distributed = pytest.importorskip("distributed")
    assert _compat.dask_client_of(object()) is None
    with distributed.Client(
        processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None
    ) as client:
        assert _compat.dask_client_of(client) is client
        assert _compat.dask_client_of(client.get_executor()) is client
