"""Decay towards reference weights (``optimizer.decay_towards``), in both forms.

The rule (docs/conventions.md, "The update rules"): coupled g ← g + λ·(p − r), decoupled
p ← r + (p − r)·(1 − s·λ). Oracles: on least squares both forms reach the generalised
ridge solution (XᵀX/n + λI)⁻¹(Xᵀy/n + λ·w₀), a Hypothesis property; with zero gradients
every decoupled class ends at r + (p₀ − r)·(1 − lr·λ)^T on every path; every path equals
the per-tensor loop; a checkpoint continues bit for bit.
"""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from _paths import IMPLEMENTATIONS, cases, small_params
from _profiles import examples
from hypothesis import given, settings
from hypothesis import strategies as st

import l2optim

AdagradW = l2optim.with_weight_decay(torch.optim.Adagrad)

# (class, hyperparameters, implementations it takes)
CLASSES = [
    (l2optim.SGD, {"momentum": 0.9}, ["loop", "foreach", "fused"]),
    (l2optim.SGDW, {"momentum": 0.9}, ["loop", "foreach"]),
    (l2optim.SGDW, {}, ["loop", "foreach", "fused"]),
    (l2optim.Adam, {}, ["loop", "foreach", "fused"]),
    (l2optim.AdamW, {"amsgrad": True}, ["loop", "foreach", "fused"]),
    (l2optim.RMSprop, {"centered": True}, ["loop", "foreach"]),
    (l2optim.RMSpropW, {"momentum": 0.5}, ["loop", "foreach"]),
    (AdagradW, {"decoupled_weight_decay": True}, ["loop", "foreach"]),
]
CASES = cases(CLASSES)
LR, LAMBDA, STEPS = 0.05, 0.5, 6


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    return small_params(seed)


def _references() -> list[torch.Tensor]:
    return [p.detach() for p in _params(seed=7)]


def _run(cls, hyper, implementation, *, grads="random", steps=STEPS):
    params = _params()
    optimizer = cls(params, lr=LR, weight_decay=LAMBDA, **hyper,
                    **IMPLEMENTATIONS[implementation])
    optimizer.decay_towards(_references())
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = (torch.randn(p.shape, generator=generator) if grads == "random"
                      else torch.zeros_like(p))
        optimizer.step()
    return params, optimizer


@pytest.mark.parametrize(("cls", "hyper", "implementation"), CASES)
def test_every_path_decays_towards_the_reference_as_the_loop_does(cls, hyper, implementation):
    ours, optimizer = _run(cls, hyper, implementation)
    loop, _ = _run(cls, hyper, "loop")
    for a, b in zip(ours, loop, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    assert all("decay_reference" in optimizer.state[p] for p in ours)


@pytest.mark.parametrize(
    ("cls", "hyper", "implementation"),
    [c for c in CASES if c.values[1].get("decoupled_weight_decay", c.values[0].__name__.endswith("W"))
     or c.values[0] is l2optim.SGD],
)
def test_with_zero_gradients_the_gap_to_the_reference_shrinks_geometrically(
    cls, hyper, implementation
):
    if cls is l2optim.SGD and hyper.get("momentum"):
        hyper = {}  # coupled SGD without momentum: p ← p − lr·λ·(p − r), the same factor
    ours, _ = _run(cls, hyper, implementation, grads="zero")
    for p, p0, r in zip(ours, _params(), _references(), strict=True):
        expected = r + (p0.detach() - r) * (1 - LR * LAMBDA) ** STEPS
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-6)


@st.composite
def problems(draw):
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n, d = draw(st.integers(5, 30)), draw(st.integers(1, 6))
    X, w0 = rng.normal(size=(n, d)), rng.normal(size=d)
    y = X @ rng.normal(size=d) + 0.3 * rng.normal(size=n)
    return X, y, w0


@settings(max_examples=examples(20), deadline=None)
@given(problem=problems(), weight_decay=st.floats(0.05, 5.0), decoupled=st.booleans())
def test_least_squares_reaches_the_generalised_ridge_solution(problem, weight_decay, decoupled):
    X, y, w0 = problem
    n, d = X.shape
    H = X.T @ X / n + weight_decay * np.eye(d)
    expected = np.linalg.solve(H, X.T @ y / n + weight_decay * w0)
    # Gradient descent at lr = 1/L contracts by 1 − μ/L per step (μ ≥ λ).
    eigenvalues = np.linalg.eigvalsh(H)
    lr = 1.0 / eigenvalues[-1]
    steps = int(np.ceil(np.log(1e-12) / np.log(1 - eigenvalues[0] / eigenvalues[-1]))) + 10
    w = torch.nn.Parameter(torch.zeros(d, dtype=torch.float64))
    optimizer = (l2optim.SGDW if decoupled else l2optim.SGD)([w], lr=lr, weight_decay=weight_decay)
    optimizer.decay_towards([torch.from_numpy(w0)])
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for _ in range(steps):
        with torch.no_grad():
            w.grad = Xt.T @ (Xt @ w - yt) / n
        optimizer.step()
    np.testing.assert_allclose(w.detach().numpy(), expected, rtol=1e-8, atol=1e-8)


def test_a_checkpoint_carries_the_references_and_continues_bit_for_bit():
    def fresh():
        params = _params()
        return params, l2optim.AdamW(params, lr=LR, weight_decay=LAMBDA)

    uninterrupted, optimizer = fresh()
    optimizer.decay_towards(_references())
    generator = torch.Generator().manual_seed(1)
    grads = [[torch.randn(p.shape, generator=generator) for p in uninterrupted] for _ in range(6)]
    for step in range(6):
        for p, g in zip(uninterrupted, grads[step], strict=True):
            p.grad = g
        optimizer.step()

    for saved_after in (0, 3):  # before the first step too: the references are the only state
        params, optimizer = fresh()
        optimizer.decay_towards(_references())
        for step in range(saved_after):
            for p, g in zip(params, grads[step], strict=True):
                p.grad = g
            optimizer.step()
        buffer = io.BytesIO()
        torch.save({"params": [p.detach() for p in params], "opt": optimizer.state_dict()}, buffer)
        buffer.seek(0)
        saved = torch.load(buffer, weights_only=True)
        resumed, again = fresh()
        with torch.no_grad():
            for p, value in zip(resumed, saved["params"], strict=True):
                p.copy_(value)
        again.load_state_dict(saved["opt"])
        assert again.param_groups[0]["decay_to_reference"] is True
        for step in range(saved_after, 6):
            for p, g in zip(resumed, grads[step], strict=True):
                p.grad = g
            again.step()
        for a, b in zip(resumed, uninterrupted, strict=True):
            assert torch.equal(a, b)
    # A deep copy (a pickle) continues alike.
    twin = copy.deepcopy(again)
    assert torch.equal(
        twin.state[twin.param_groups[0]["params"][0]]["decay_reference"], _references()[0]
    )


def test_the_default_reference_is_the_weights_now():
    params = _params()
    optimizer = l2optim.SGDW(params, lr=LR, weight_decay=LAMBDA)
    optimizer.decay_towards()
    with torch.no_grad():
        params[0].add_(1.0)  # the reference is a copy, not a view of the weights
    assert torch.equal(optimizer.state[params[0]]["decay_reference"], _params()[0].detach())


def test_a_step_gradscaler_skips_changes_nothing():
    params = _params()
    optimizer = l2optim.AdamW(params, lr=LR, weight_decay=LAMBDA)
    optimizer.decay_towards(_references())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**8)
    before = [p.detach().clone() for p in params]
    scaler.scale(sum(p.sum() for p in params) * float("inf")).backward()
    scaler.step(optimizer)
    scaler.update()
    assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))


def test_bad_references_and_combinations_are_refused_and_change_nothing():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    optimizer = l2optim.AdamW(l2optim.decay_groups(model, 0.1), lr=LR)
    with pytest.raises(ValueError, match=r"entry 0 has shape \(2, 2\), its parameter \(4, 3\)"):
        optimizer.decay_towards({model[0].weight: torch.zeros(2, 2)})
    with pytest.raises(ValueError, match="key 0 is not a parameter of this optimizer"):
        optimizer.decay_towards({torch.nn.Parameter(torch.zeros(1)): torch.zeros(1)})
    with pytest.raises(ValueError, match="2 tensors for the optimizer's 4 parameters"):
        optimizer.decay_towards([torch.zeros(4, 3), torch.zeros(4)])
    with pytest.raises(ValueError, match="references cover 1 of the 3 parameters of param group 1"):
        optimizer.decay_towards({model[0].weight: torch.zeros(4, 3), model[1].weight: torch.ones(4)})
    assert not optimizer.state and all("decay_to_reference" not in g for g in optimizer.param_groups)
    # The decayed group alone: the exempt group keeps decaying towards nothing at λ = 0.
    optimizer.decay_towards({model[0].weight: torch.zeros(4, 3)})
    assert [g.get("decay_to_reference", False) for g in optimizer.param_groups] == [True, False]
    with pytest.raises(ValueError, match="decays towards reference weights"):
        l2optim.to_torch_state_dict(optimizer)
    # The one-pass updates and cautious decay have no reference.
    params = _params()
    rmsprop = l2optim.RMSpropW(params, weight_decay=0.1, fused=True)
    rmsprop.decay_towards()
    cautious = l2optim.AdamW(_params(), weight_decay=0.1, cautious_weight_decay=True)
    cautious.decay_towards()
    for opt, message in [(rmsprop, "decay towards a reference with fused=True"),
                         (cautious, "cautious_weight_decay=True with decay towards a reference")]:
        for p in opt.param_groups[0]["params"]:
            p.grad = torch.ones_like(p)
        before = [p.detach().clone() for p in opt.param_groups[0]["params"]]
        with pytest.raises(ValueError, match=message):
            opt.step()
        params = opt.param_groups[0]["params"]
        assert all(torch.equal(p, b) for p, b in zip(params, before, strict=True))


def test_a_group_at_lambda_zero_keeps_its_references_away_from_the_base():
    """decay_towards() covers the exempt group too, and a warm-up starts every λ at 0:
    torch's Adam must still start its state at the first step."""
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    optimizer = l2optim.AdamW(l2optim.decay_groups(model, 0.1), lr=LR)
    optimizer.decay_towards()
    warm_up = l2optim.LambdaWeightDecay(optimizer, lambda t: min(1.0, t / 2))
    for _ in range(4):
        optimizer.zero_grad()
        model(torch.randn(5, 3)).pow(2).mean().backward()
        optimizer.step()
        warm_up.step()
    assert {"step", "exp_avg", "decay_reference"} <= set(optimizer.state[model[1].weight])


def test_a_fused_group_beside_does_not_shift_which_references_are_hidden():
    fused, toward = _params(), _params(seed=3)
    optimizer = l2optim.RMSpropW(
        [{"params": fused, "fused": True}, {"params": toward}], lr=LR, weight_decay=LAMBDA
    )
    optimizer.decay_towards({p: torch.zeros_like(p) for p in toward})
    for p in fused + toward:
        p.grad = torch.ones_like(p)
    optimizer.step()
    assert all("square_avg" in optimizer.state[p] for p in toward)


def test_a_group_without_references_is_refused_before_anything_changes():
    params, more = _params(), _params(seed=3)
    optimizer = l2optim.SGD(params, lr=LR, weight_decay=LAMBDA)
    optimizer.add_param_group({"params": more, "decay_to_reference": True})
    for p in params + more:
        p.grad = torch.ones_like(p)
    before = [p.detach().clone() for p in params + more]
    with pytest.raises(ValueError, match="param group 1 decays towards references .* has none"):
        optimizer.step()
    for p, b in zip(params + more, before, strict=True):
        assert torch.equal(p, b) and torch.equal(p.grad, torch.ones_like(p))


@pytest.mark.parametrize("cls", [l2optim.AdamW, l2optim.RMSpropW, l2optim.Adam])
def test_a_compiled_first_step_decays_towards_the_reference_as_eager(cls):
    def run(compiled):
        params = _params()
        optimizer = cls(params, lr=LR, weight_decay=LAMBDA)
        optimizer.decay_towards(_references())
        step = torch.compile(optimizer.step, backend="eager") if compiled else optimizer.step
        generator = torch.Generator().manual_seed(1)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=generator)
            step()
        return params

    for a, b in zip(run(True), run(False), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_torch_state_refuses_references_whatever_lambda_is_today():
    optimizer = l2optim.AdamW(_params(), lr=LR, weight_decay=0.1)
    optimizer.decay_towards()
    l2optim.LambdaWeightDecay(optimizer, lambda t: 0.0)  # a warm-up at its start
    with pytest.raises(ValueError, match="decays towards reference weights"):
        l2optim.to_torch_state_dict(optimizer, approximate=True)
