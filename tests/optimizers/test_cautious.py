"""Cautious decoupled decay (``cautious_weight_decay=True``).

The rule (docs/conventions.md, "The update rules"): with p the weights before a step and
p' after the base update, p' ← p' − s·λ·p·𝟙[(p − p')·p ≥ 0]. The oracle is a per-step one:
a twin optimizer with λ = 0 takes the base update from the same weights (decoupled decay
leaves the base's state alone, so the twins' states stay equal), and the rule is applied
to its result by hand. A coordinate whose update points away from zero is never shrunk.
"""

from __future__ import annotations

import pytest
import torch
from _paths import IMPLEMENTATIONS, cases, small_params

import l2optim

AdagradW = l2optim.with_weight_decay(torch.optim.Adagrad)

# fused=True runs torch's fused kernels here; SGDW with momentum and RMSprop have none,
# and their one-pass update refuses cautious decay (tested below).
CLASSES = [
    (l2optim.SGDW, {"momentum": 0.9}, ["loop", "foreach"]),
    (l2optim.SGDW, {}, ["loop", "foreach", "fused"]),
    (l2optim.AdamW, {}, ["loop", "foreach", "fused"]),
    (l2optim.AdamW, {"amsgrad": True, "maximize": True}, ["loop", "foreach"]),
    (l2optim.RMSpropW, {"momentum": 0.5, "centered": True}, ["loop", "foreach"]),
    (AdagradW, {"decoupled_weight_decay": True}, ["loop", "foreach"]),
]
CASES = cases(CLASSES)
LR, LAMBDA = 0.05, 0.5


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    return small_params(seed)


def _make(cls, hyper, implementation, params, weight_decay, scaling="lr"):
    return cls(
        params,
        lr=LR,
        weight_decay=weight_decay,
        cautious_weight_decay=weight_decay > 0,
        weight_decay_scaling=scaling,
        **hyper,
        **IMPLEMENTATIONS[implementation],
    )


@pytest.mark.parametrize("scaling", ["lr", "none"])
@pytest.mark.parametrize(("cls", "hyper", "implementation"), CASES)
def test_each_step_decays_only_where_the_update_moves_towards_zero(
    cls, hyper, implementation, scaling
):
    ours_params, twin_params = _params(), _params()
    ours = _make(cls, hyper, implementation, ours_params, LAMBDA, scaling)
    twin = _make(cls, hyper, implementation, twin_params, 0.0, scaling)
    scale = LR if scaling == "lr" else 1.0
    generator = torch.Generator().manual_seed(1)
    shrunk = spared = 0
    for _ in range(5):
        with torch.no_grad():
            for a, b in zip(ours_params, twin_params, strict=True):
                b.copy_(a)
        before = [p.detach().clone() for p in ours_params]
        for a, b in zip(ours_params, twin_params, strict=True):
            a.grad = torch.randn(a.shape, generator=generator)
            b.grad = a.grad.clone()
        ours.step()
        twin.step()
        for p, base, p0 in zip(ours_params, twin_params, before, strict=True):
            agrees = (p0 - base) * p0 >= 0
            expected = torch.where(agrees, base - scale * LAMBDA * p0, base)
            torch.testing.assert_close(p.detach(), expected.detach(), rtol=1e-6, atol=1e-7)
            # Never shrunk where the update points away from zero: there it is the base's.
            assert torch.equal(p[~agrees], base[~agrees])
            shrunk += int(agrees.sum())
            spared += int((~agrees).sum())
    assert shrunk > 0 and spared > 0  # both cases occurred


@pytest.mark.parametrize(("cls", "hyper", "implementation"), CASES)
def test_with_lambda_zero_it_is_the_base_optimizer(cls, hyper, implementation):
    def run(**extra):
        params = _params()
        optimizer = cls(params, lr=LR, weight_decay=0.0, **hyper, **extra,
                        **IMPLEMENTATIONS[implementation])
        generator = torch.Generator().manual_seed(1)
        for _ in range(4):
            for p in params:
                p.grad = torch.randn(p.shape, generator=generator)
            optimizer.step()
        return params

    decoupled = {} if "decoupled_weight_decay" in hyper else {"decoupled_weight_decay": True}
    for a, b in zip(run(cautious_weight_decay=True, **decoupled), run(), strict=True):
        assert torch.equal(a, b)


def test_a_step_gradscaler_skips_changes_nothing():
    params = _params()
    optimizer = l2optim.AdamW(params, lr=LR, weight_decay=LAMBDA, cautious_weight_decay=True)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    before = [p.detach().clone() for p in params]
    loss = sum(p.sum() for p in params) * float("inf")
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))


def test_a_compiled_step_equals_the_eager_one():
    def run(compiled):
        params = _params()
        optimizer = l2optim.SGDW(params, lr=LR, momentum=0.9, weight_decay=LAMBDA,
                                 cautious_weight_decay=True)
        step = torch.compile(optimizer.step, backend="eager") if compiled else optimizer.step
        generator = torch.Generator().manual_seed(1)
        for _ in range(4):
            for p in params:
                p.grad = torch.randn(p.shape, generator=generator)
            step()
        return params

    for a, b in zip(run(True), run(False), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_combinations_it_cannot_run_are_refused_clearly():
    with pytest.raises(ValueError, match="cautious_weight_decay=True needs decoupled_weight_decay"):
        l2optim.Adam(_params(), weight_decay=0.1, cautious_weight_decay=True)
    with pytest.raises(TypeError, match="cautious_weight_decay must be True or False, got 'yes'"):
        l2optim.AdamW(_params(), cautious_weight_decay="yes")
    # RMSprop's fused=True is l2optim's one-pass compiled update: no cautious decay there.
    params = _params()
    optimizer = l2optim.RMSpropW(params, weight_decay=0.1, cautious_weight_decay=True, fused=True)
    for p in params:
        p.grad = torch.ones_like(p)
    before = [p.detach().clone() for p in params]
    with pytest.raises(ValueError, match="param group 0: cautious_weight_decay=True with fused"):
        optimizer.step()
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))
    # The race's stacked training has no cautious decay either.
    trainer = l2optim.FoldTrainer(
        lambda: torch.nn.Linear(3, 1), torch.randn(20, 3).numpy(), torch.randn(20).numpy(),
        optimizer=l2optim.AdamW, optimizer_kwargs={"cautious_weight_decay": True}, epochs=2,
    )
    with pytest.raises(ValueError, match="batched training does not implement cautious"):
        l2optim.select_lambda_fast(trainer, (1e-3, 1.0), budget=5)
    # A checkpoint for torch.optim: refused unless asked to drop the mask.
    optimizer = l2optim.AdamW(_params(), weight_decay=0.1, cautious_weight_decay=True)
    with pytest.raises(ValueError, match="cautious_weight_decay=True masks the decay"):
        l2optim.to_torch_state_dict(optimizer)
    assert "cautious_weight_decay" not in l2optim.to_torch_state_dict(
        optimizer, approximate=True
    )["param_groups"][0]


def test_a_checkpoint_carries_it_and_an_old_one_loads_without_it():
    optimizer = l2optim.AdamW(_params(), weight_decay=0.1, cautious_weight_decay=True)
    saved = optimizer.state_dict()
    assert saved["param_groups"][0]["cautious_weight_decay"] is True
    fresh = l2optim.AdamW(_params(), weight_decay=0.1)
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["cautious_weight_decay"] is True
    del saved["param_groups"][0]["cautious_weight_decay"]  # saved before it existed
    fresh.load_state_dict(saved)
    assert fresh.param_groups[0]["cautious_weight_decay"] is False
