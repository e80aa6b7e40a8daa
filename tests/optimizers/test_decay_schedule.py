"""Weight decay on a schedule (l2optim.WeightDecayScheduler and its subclasses).

Oracles: a constant schedule is no schedule, bit for bit; with zero gradients (every base
update a no-op) decoupled decay ends at p₀·∏(1 − lr·λ_t); every path a step can take
equals the per-tensor loop; a resumed run equals the uninterrupted one bit for bit,
whichever order the pieces are loaded in.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
from _paths import IMPLEMENTATIONS, cases, small_params

import l2optim

AdagradW = l2optim.with_weight_decay(torch.optim.Adagrad)

# (class, hyperparameters, implementations it takes)
CLASSES = [
    (l2optim.SGD, {"momentum": 0.9}, ["loop", "foreach", "fused"]),
    (l2optim.SGDW, {"momentum": 0.9}, ["loop", "foreach", "fused"]),
    (l2optim.Adam, {}, ["loop", "foreach", "fused"]),
    (l2optim.AdamW, {}, ["loop", "foreach", "fused"]),
    (l2optim.RMSpropW, {"momentum": 0.5}, ["loop", "foreach", "fused"]),
    (AdagradW, {"decoupled_weight_decay": True}, ["loop", "foreach"]),
]
CASES = cases(CLASSES)
LR, STEPS = 0.05, 8


def _params() -> list[torch.nn.Parameter]:
    return small_params(shapes=((6, 5), (5,), (3, 2, 2)))


def _run(cls, hyper, implementation, schedule, *, grads="random", steps=STEPS):
    params = _params()
    optimizer = cls(params, lr=LR, weight_decay=0.1, **hyper, **IMPLEMENTATIONS[implementation])
    scheduler = schedule(optimizer) if schedule is not None else None
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator) if grads == "random" else torch.zeros_like(p)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
    return params


def cosine(optimizer):
    return l2optim.CosineWeightDecay(optimizer, final_weight_decay=0.4, total_steps=5)


def cosine_values(initial=0.1, final=0.4, total=5, steps=STEPS):
    return [
        final + (initial - final) * (1 + math.cos(math.pi * min(t, total) / total)) / 2
        for t in range(steps)
    ]


@pytest.mark.parametrize(("cls", "hyper", "implementation"), CASES)
def test_a_constant_schedule_is_no_schedule_bit_for_bit(cls, hyper, implementation):
    constant = _run(cls, hyper, implementation, lambda o: l2optim.LambdaWeightDecay(o, lambda t: 1.0))
    plain = _run(cls, hyper, implementation, None)
    for a, b in zip(constant, plain, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("cls", "hyper", "implementation"), CASES)
def test_every_path_follows_the_schedule_as_the_loop_does(cls, hyper, implementation):
    ours = _run(cls, hyper, implementation, cosine)
    loop = _run(cls, hyper, "loop", cosine)
    unscheduled = _run(cls, hyper, "loop", None)
    for a, b, c in zip(ours, loop, unscheduled, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
        assert not torch.allclose(a, c, rtol=1e-4, atol=0)  # the schedule changed the run


@pytest.mark.parametrize(
    ("cls", "hyper", "implementation"),
    [case for case in CASES if case.values[0] not in (l2optim.SGD, l2optim.Adam)],
)
def test_decoupled_decay_multiplies_by_one_minus_lr_lambda_t(cls, hyper, implementation):
    ours = _run(cls, hyper, implementation, cosine, grads="zero")
    factor = math.prod(1 - LR * lam for lam in cosine_values())
    for p, p0 in zip(ours, _params(), strict=True):
        torch.testing.assert_close(p.detach(), p0.detach() * factor, rtol=1e-6, atol=0)


def test_the_schedule_reads_each_groups_initial_weight_decay():
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4))
    optimizer = l2optim.AdamW(l2optim.decay_groups(model, 0.04), lr=1e-3)
    scheduler = l2optim.CosineWeightDecay(optimizer, final_weight_decay=[0.4, 0.0], total_steps=4)
    seen = []
    for _ in range(6):
        seen.append([g["weight_decay"] for g in optimizer.param_groups])
        scheduler.step()
    # DINO's rise for the decayed group; the group decay_groups leaves at 0 stays there.
    assert [round(s[0], 6) for s in seen] == [round(v, 6) for v in cosine_values(0.04, 0.4, 4, 6)]
    assert all(s[1] == 0.0 for s in seen)
    assert [g["initial_weight_decay"] for g in optimizer.param_groups] == [0.04, 0.0]
    # One final λ: the group at 0 stays there (decay_groups exempted it), unless a list
    # says otherwise.
    optimizer = l2optim.AdamW(l2optim.decay_groups(model, 0.04), lr=1e-3)
    scheduler = l2optim.CosineWeightDecay(optimizer, final_weight_decay=0.4, total_steps=4)
    for _ in range(5):
        scheduler.step()
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.4, 0.0]
    optimizer = l2optim.AdamW(l2optim.decay_groups(model, 0.04), lr=1e-3)
    scheduler = l2optim.CosineWeightDecay(optimizer, final_weight_decay=[0.4, 0.1], total_steps=4)
    for _ in range(5):
        scheduler.step()
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.4, 0.1]


# -- resuming -----------------------------------------------------------------------------


def _training(steps, *, resume_from=None, order="optimizer first"):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    optimizer = l2optim.AdamW(l2optim.decay_groups(model, 0.05), lr=1e-2)
    if resume_from is not None and order == "optimizer before the schedulers are made":
        optimizer.load_state_dict(resume_from["optimizer"])
    lr_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=20)
    decay_schedule = l2optim.CosineWeightDecay(optimizer, final_weight_decay=0.5, total_steps=20)
    if resume_from is not None:
        if order == "schedulers first":
            decay_schedule.load_state_dict(resume_from["decay"])
            lr_schedule.load_state_dict(resume_from["lr"])
            optimizer.load_state_dict(resume_from["optimizer"])
        else:
            if order == "optimizer first":
                optimizer.load_state_dict(resume_from["optimizer"])
            lr_schedule.load_state_dict(resume_from["lr"])
            decay_schedule.load_state_dict(resume_from["decay"])
        model.load_state_dict(resume_from["model"])
    generator = torch.Generator().manual_seed(len(resume_from or {}))
    x, y = torch.randn(steps, 16, 4, generator=generator), torch.randn(steps, 16, 1, generator=generator)
    for i in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x[i]), y[i]).backward()
        optimizer.step()
        lr_schedule.step()
        decay_schedule.step()
    buffer = io.BytesIO()
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "lr": lr_schedule.state_dict(),
            "decay": decay_schedule.state_dict(),
        },
        buffer,
    )
    buffer.seek(0)
    return model, torch.load(buffer, weights_only=True)


@pytest.mark.parametrize(
    "order", ["optimizer first", "schedulers first", "optimizer before the schedulers are made"]
)
def test_a_resumed_run_is_the_uninterrupted_run_bit_for_bit(order):
    def batches_of(steps, seed):
        generator = torch.Generator().manual_seed(seed)
        return torch.randn(steps, 16, 4, generator=generator), torch.randn(steps, 16, 1, generator=generator)

    # The uninterrupted run sees the batches the two halves see.
    first, saved = _training(10)
    resumed, _ = _training(10, resume_from=saved, order=order)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    optimizer = l2optim.AdamW(l2optim.decay_groups(model, 0.05), lr=1e-2)
    lr_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=20)
    decay_schedule = l2optim.CosineWeightDecay(optimizer, final_weight_decay=0.5, total_steps=20)
    x0, y0 = batches_of(10, 0)
    x1, y1 = batches_of(10, len(saved))
    x, y = torch.cat([x0, x1]), torch.cat([y0, y1])
    for i in range(20):
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x[i]), y[i]).backward()
        optimizer.step()
        lr_schedule.step()
        decay_schedule.step()
    for a, b in zip(resumed.parameters(), model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_it_chains_with_lr_schedulers_and_their_state_round_trips():
    params = _params()
    optimizer = l2optim.SGDW(params, lr=0.1, weight_decay=0.1)
    chained = torch.optim.lr_scheduler.ChainedScheduler(
        [
            torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=0.5),
            l2optim.LambdaWeightDecay(optimizer, lambda t: 2.0**t),
        ]
    )
    for _ in range(3):
        chained.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.5**3)
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(0.1 * 2.0**3)
    state = chained.state_dict()
    fresh = l2optim.SGDW(_params(), lr=0.1, weight_decay=0.1)
    again = torch.optim.lr_scheduler.ChainedScheduler(
        [
            torch.optim.lr_scheduler.ExponentialLR(fresh, gamma=0.5),
            l2optim.LambdaWeightDecay(fresh, lambda t: 2.0**t),
        ]
    )
    again.load_state_dict(state)
    assert fresh.param_groups[0]["weight_decay"] == pytest.approx(0.1 * 2.0**3)


class _WarmUp:
    """A schedule as a callable object whose state changes during the run (torch's
    ``LambdaLR`` keeps such an object's attributes in its ``state_dict``)."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def __call__(self, t: int) -> float:
        return min(1.0, (t + 1) / self.steps)


def test_a_callable_objects_state_is_kept_and_functions_are_left_out():
    params = _params()
    optimizer = l2optim.AdamW(params, lr=LR, weight_decay=0.1)
    optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))]})
    warm_up = _WarmUp(steps=2)
    scheduler = l2optim.LambdaWeightDecay(optimizer, [warm_up, lambda t: 0.5])
    warm_up.steps = 8  # the run lengthened its warm-up
    scheduler.step()
    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)  # a function in it would not pickle
    buffer.seek(0)

    fresh = l2optim.AdamW(_params(), lr=LR, weight_decay=0.1)
    fresh.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))]})
    resumed_warm_up = _WarmUp(steps=2)
    resumed = l2optim.LambdaWeightDecay(fresh, [resumed_warm_up, lambda t: 0.5])
    resumed.load_state_dict(torch.load(buffer, weights_only=False))
    assert resumed_warm_up.steps == 8
    for _ in range(3):
        scheduler.step()
        resumed.step()
        assert resumed.get_last_weight_decay() == scheduler.get_last_weight_decay()
    assert resumed.get_last_weight_decay() == pytest.approx([0.1 * 5 / 8, 0.1 * 0.5])


def test_a_refused_load_leaves_the_scheduler_and_the_groups_as_they_were():
    two_groups = l2optim.AdamW(_params(), lr=LR, weight_decay=0.1)
    two_groups.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))]})
    other = l2optim.CosineWeightDecay(two_groups, 0.4, total_steps=10)
    for _ in range(5):
        other.step()
    optimizer = l2optim.AdamW(_params(), lr=LR, weight_decay=0.1)
    warm_up = _WarmUp(steps=2)
    scheduler = l2optim.LambdaWeightDecay(optimizer, warm_up)
    before = scheduler.state_dict()
    saved = l2optim.LambdaWeightDecay(two_groups, [_WarmUp(8), _WarmUp(8)]).state_dict()
    for state in (other.state_dict(), saved):
        with pytest.raises(ValueError, match="param groups|weight_decay_lambda"):
            scheduler.load_state_dict(state)
        assert scheduler.state_dict() == before and warm_up.steps == 2
        assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(0.05)
    scheduler.step()  # and it carries on
    assert optimizer.param_groups[0]["weight_decay"] == pytest.approx(0.1)


@pytest.mark.parametrize("initial, final", [(0.04, 0.4), (0.1, 0.0), (0.3, 0.7)])
def test_the_cosine_starts_and_ends_exactly_at_its_values(initial, final):
    """As CosineAnnealingLR keeps the first lr: the first step's λ is λ₀ itself."""
    optimizer = l2optim.AdamW(_params(), lr=LR, weight_decay=initial)
    scheduler = l2optim.CosineWeightDecay(optimizer, final, total_steps=3)
    assert optimizer.param_groups[0]["weight_decay"] == initial
    for _ in range(4):
        scheduler.step()
    assert optimizer.param_groups[0]["weight_decay"] == final


def test_a_tensor_weight_decay_is_written_in_place():
    params = _params()
    weight_decay = torch.tensor(0.1)
    optimizer = l2optim.AdamW(params, lr=LR, weight_decay=weight_decay)
    scheduler = l2optim.LambdaWeightDecay(optimizer, lambda t: 1.0 / (t + 1))
    scheduler.step()
    assert optimizer.param_groups[0]["weight_decay"] is weight_decay
    assert float(weight_decay) == pytest.approx(0.05)


def test_a_compiled_step_follows_the_schedule():
    eager = _run(l2optim.AdamW, {}, "default", cosine)
    params = _params()
    optimizer = l2optim.AdamW(params, lr=LR, weight_decay=0.1)
    scheduler = cosine(optimizer)
    step = torch.compile(optimizer.step, backend="eager")
    generator = torch.Generator().manual_seed(1)
    for _ in range(STEPS):
        for p in params:
            p.grad = torch.randn(p.shape, generator=generator)
        step()
        scheduler.step()
    # Traced, Adam's bias corrections are float32 tensors (Python floats eagerly): a few
    # 1e-6 apart after 8 steps. A step's decay missed moves a weight by lr·λ_t·|p| ≥ 5e-3·|p|.
    for a, b in zip(params, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


# -- bad input ----------------------------------------------------------------------------


def test_bad_input_is_refused_with_the_argument_and_range():
    optimizer = l2optim.AdamW(_params(), weight_decay=0.1)
    with pytest.raises(ValueError, match=r"total_steps must be an integer >= 1, got 0"):
        l2optim.CosineWeightDecay(optimizer, 0.4, total_steps=0)
    with pytest.raises(ValueError, match="final_weight_decay"):
        l2optim.CosineWeightDecay(optimizer, -0.4, total_steps=10)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer, got list"):
        l2optim.LambdaWeightDecay([], lambda t: 1.0)
    with pytest.raises(ValueError, match="weight_decay_lambda must be a function or a list of 1"):
        l2optim.LambdaWeightDecay(optimizer, [lambda t: 1.0, lambda t: 2.0])
    fresh = l2optim.AdamW(_params(), weight_decay=0.1)
    with pytest.raises(KeyError, match="no 'initial_weight_decay' entry"):
        l2optim.LambdaWeightDecay(fresh, lambda t: 1.0, last_epoch=4)
    # A schedule that goes negative: refused at that step, and the groups keep their λ.
    scheduler = l2optim.LambdaWeightDecay(optimizer, lambda t: 1.0 - t)
    with pytest.raises(ValueError, match=r"scheduled weight_decay of param group 0 value: -0\.1"):
        scheduler.step()
        scheduler.step()
    assert optimizer.param_groups[0]["weight_decay"] == 0.0


def test_a_refused_step_leaves_the_schedule_where_it_was():
    optimizer = l2optim.AdamW(_params(), weight_decay=0.1)
    scheduler = l2optim.CosineWeightDecay(optimizer, 0.4, total_steps=4)
    optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(2))]})
    for _ in range(2):
        with pytest.raises(ValueError, match="1 weight decays for 2 param groups"):
            scheduler.step()
    assert scheduler.last_epoch == 0
