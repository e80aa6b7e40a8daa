"""The decay rule: coupled L2 and decoupled weight decay on lists of tensors.

This module is the one place that knows the arithmetic of both forms. It knows
nothing about optimizer classes; they decide *where* in a step the rule sits.

For a parameter p with gradient g, learning rate lr_t and strength λ:

* coupled L2:  g ← g + λ·p, then the base update;
* decoupled:   p ← p·(1 − s_t·λ), then the base update with g unchanged, where
  s_t is ``lr_t`` (scaling ``"lr"``), ``lr_t / lr_ref`` (``"schedule"``),
  ``lr_t² / lr_ref`` (``"corrected"``) or 1 (``"none"``). ``lr_ref`` is the group's
  reference learning rate: the lr it was created with, or what the user set (never
  torch's ``initial_lr``, which schedulers and frameworks write with meanings of their
  own); for ``"corrected"`` it is the schedule's peak γ_max.

**Towards a reference** r (the initial or pretrained weights: L2-SP, Li et al. 2018)
instead of zero, both forms: g ← g + λ·(p − r), or p ← r + (p − r)·(1 − s_t·λ).

**Cautious** decoupled decay (Chen et al. 2025, "Cautious Weight Decay",
arXiv:2510.12402) decays only the coordinates that the base update moves towards zero:
with p the weights before the step and p' after the base update (Δ = p − p' the step
taken, lr·u_t),

    p' ← p' − s_t·λ·p·𝟙[Δ·p ≥ 0],

so a coordinate whose update points away from zero is never shrunk (:func:`cautious_shrink`).

``"corrected"`` is Defazio's corrected decay (2025, "AdamC"): λ_t = λ·lr_t/γ_max in
torch's convention, so the decay per step falls with the square of the lr. At lr = lr_ref
it decays as ``"lr"`` does; at a constant lr it is ``"lr"`` with λ·lr/lr_ref.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from l2optim import _compat
from l2optim._validation import check_real

__all__ = [
    "LR_ABOVE_REF_RATIO",
    "WEIGHT_DECAY_SCALINGS",
    "LrAboveReferenceWarning",
    "add_coupled_decay",
    "cautious_shrink",
    "check_cautious",
    "check_decoupled_factor",
    "check_lr_ref",
    "check_weight_decay",
    "check_weight_decay_scaling",
    "decay_scale",
    "decoupled_factor",
    "shrink",
    "with_grad",
]

#: The allowed values of ``weight_decay_scaling``.
WEIGHT_DECAY_SCALINGS = ("lr", "schedule", "corrected", "none")

#: The scalings that read the group's ``lr_ref``.
SCALINGS_WITH_LR_REF = ("schedule", "corrected")

Scalar = float | Tensor

#: How far above its ``lr_ref`` a group's lr may rise under ``"schedule"`` before the
#: optimizer warns: twice the decay per step that ``weight_decay`` names.
LR_ABOVE_REF_RATIO = 2.0


class LrAboveReferenceWarning(UserWarning):
    """Under ``weight_decay_scaling="schedule"`` a group's lr rose well above its ``lr_ref``,
    so each step decays by a multiple of the ``weight_decay`` the user set."""


def check_weight_decay(where: str, weight_decay: Scalar) -> None:
    """``TypeError`` unless λ is a real number; ``ValueError`` unless finite and ≥ 0.

    The value error keeps torch.optim's wording ("Invalid weight_decay value: ...").
    """
    value = check_real(where, weight_decay)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"Invalid {where} value: {weight_decay!r} (must be a finite number >= 0)")


def check_weight_decay_scaling(scaling: str, decoupled: bool) -> None:
    """Raise ``ValueError`` for an unknown scaling, or a scaling the coupled form ignores."""
    if scaling not in WEIGHT_DECAY_SCALINGS:
        raise ValueError(
            f"Invalid weight_decay_scaling: {scaling!r}; allowed values are "
            + ", ".join(repr(s) for s in WEIGHT_DECAY_SCALINGS)
        )
    if scaling != "lr" and not decoupled:
        # Coupled L2 has no scaling of its own: the base update multiplies λ·p by
        # whatever it multiplies the gradient by, so a choice here would be ignored.
        raise ValueError(
            f"weight_decay_scaling={scaling!r} needs decoupled_weight_decay=True; "
            "coupled L2 only supports the default 'lr'"
        )


def check_cautious(where: str, cautious: Any, decoupled: bool) -> None:
    """``cautious_weight_decay`` is True or False, and True only with the decoupled form."""
    if not isinstance(cautious, bool):
        raise TypeError(f"{where} must be True or False, got {cautious!r}")
    if cautious and not decoupled:
        raise ValueError(
            f"{where}=True needs decoupled_weight_decay=True: cautious decay masks the "
            "decoupled shrink by the sign of the update, and coupled L2 has none of its own"
        )


def decay_scale(scaling: str, lr: Scalar, lr_ref: Scalar | None) -> Scalar:
    """s_t, the multiplier of λ in the decoupled rule p ← p·(1 − s_t·λ)."""
    if scaling == "lr":
        return lr
    if scaling == "schedule":
        check_lr_ref("lr_ref", lr_ref)
        return lr / lr_ref
    if scaling == "corrected":
        check_lr_ref("lr_ref", lr_ref)
        return lr * (lr / lr_ref)
    if scaling == "none":
        return 1.0
    check_weight_decay_scaling(scaling, decoupled=True)
    raise AssertionError("unreachable")


def lr_above_reference(index: int, group: dict, ratio: Scalar | None) -> str | None:
    """The warning to give when lr/lr_ref exceeds ``LR_ABOVE_REF_RATIO`` under a scaling
    that reads ``lr_ref``.

    A scheduler that peaks above the lr the optimizer was built with (OneCycleLR's
    ``max_lr``, a warm-up to a higher lr) multiplies the decay at its peak, silently: by
    lr/lr_ref under ``"schedule"``, by its square under ``"corrected"``.
    """
    if isinstance(ratio, Tensor):
        if ratio.device.type != "cpu":
            return None  # reading it would cost a synchronisation
        ratio = float(ratio)
    if ratio is None or not ratio > LR_ABOVE_REF_RATIO:
        return None
    scaling = group["weight_decay_scaling"]
    per_step, times = (
        ("(lr / lr_ref) * weight_decay", ratio)
        if scaling == "schedule"
        else ("lr * (lr / lr_ref) * weight_decay", ratio**2)
    )
    peak = group.get("max_lr")  # OneCycleLR declares its peak in the group
    fix = (
        f"set param_group['lr_ref'] = param_group['max_lr'] = {float(peak):.6g} (the peak "
        "OneCycleLR declares)"
        if isinstance(peak, (int, float))
        else "set param_group['lr_ref'] to the peak of the schedule"
    )
    return (
        f"param group {index}: lr = {float(group['lr']):.6g} is {ratio:.3g} times its "
        f"lr_ref = {float(group['lr_ref']):.6g}. With weight_decay_scaling={scaling!r} each "
        f"step decays the weights by {per_step}, here {times:.3g} times the decay at "
        f"lr = lr_ref that the weight_decay = {float(group['weight_decay']):.6g} you set "
        f"gives. lr_ref is the lr the group was created with; if weight_decay was meant at "
        f"the schedule's peak, {fix}. "
        "Warned once per param group."
    )


def check_lr_ref(where: str, lr_ref: Scalar | None) -> None:
    """Raise ``ValueError`` unless the reference lr of ``"schedule"`` and ``"corrected"``
    is a finite number > 0."""
    value = float(lr_ref) if isinstance(lr_ref, Tensor) and lr_ref.device.type == "cpu" else lr_ref
    if isinstance(value, Tensor):
        return  # on an accelerator: checking would cost a synchronisation
    if value is None or not isinstance(value, int | float) or not (0 < value < math.inf):
        raise ValueError(
            f"Invalid {where} value: {lr_ref!r} (must be a finite number > 0). "
            "weight_decay_scaling='schedule' decays by s = lr / lr_ref and 'corrected' by "
            "s = lr * lr / lr_ref, lr_ref being the lr the param group was created with; set "
            "param_group['lr_ref'] to the learning rate at which the decay should be "
            "weight_decay per unit of lr (the schedule's peak)"
        )


def with_grad(params: Sequence[Tensor]) -> list[Tensor]:
    """The parameters a step decays: those that have a gradient."""
    return [p for p in params if p.grad is not None]


def decoupled_factor(scale: Scalar, weight_decay: Scalar) -> Scalar:
    """The multiplier 1 − s_t·λ that decoupled decay applies to each parameter."""
    return 1 - scale * weight_decay


def check_decoupled_factor(factor: float, *, where: str, scale: str, fix: str) -> None:
    """Raise ``ValueError`` unless 1 − s·λ > 0: below, every weight would flip its sign.

    Args:
        factor: 1 − s·λ.
        where: which decay, as the message says it ("in param group 1").
        scale: s and λ, as the message shows them.
        fix: what to change.
    """
    if not factor > 0:
        raise ValueError(
            f"decoupled weight decay {where} would flip the sign of every weight: "
            f"1 - s*weight_decay = {factor:.6g} <= 0 with {scale}; s*weight_decay must be "
            f"< 1 ({fix}). No parameter was changed."
        )


def _by_device(tensors: Sequence[Tensor], *others: Sequence[Tensor]):
    """Group positions by (device, dtype), as multi-tensor kernels need."""
    if not tensors:
        return
    first = tensors[0]
    if all(t.device == first.device and t.dtype == first.dtype for t in tensors):
        yield list(tensors), *[list(o) for o in others]  # the common case, without sorting
        return
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = defaultdict(list)
    for i, t in enumerate(tensors):
        groups[(t.device, t.dtype)].append(i)
    for indices in groups.values():
        yield [tensors[i] for i in indices], *[[o[i] for i in indices] for o in others]


def _taken(found_inf: Tensor) -> Tensor:
    """1.0 where GradScaler took the step, 0.0 where it skipped it (``found_inf`` set).

    A 0-d float32 tensor on the flag's device: no host synchronisation; the reshape keeps a
    (1,)-shaped flag from making a factor non-scalar for ``_foreach_mul_``.
    """
    return 1 - found_inf.reshape(()).to(torch.float32)


def shrink(
    params: Sequence[Tensor],
    factor: Scalar,
    *,
    found_inf: Tensor | None = None,
    foreach: bool = True,
    references: Sequence[Tensor] | None = None,
) -> None:
    """Decoupled decay in place: p ← p·factor for every tensor in ``params``.

    ``found_inf`` (a one-element tensor from ``GradScaler``) turns the step into a
    no-op on the device, without a host synchronisation, when a gradient overflowed.
    With ``references``, p ← r + (p − r)·factor: towards r, one per parameter.
    """
    if not params:
        return
    if references is not None:
        _shrink_towards(params, references, factor, found_inf)
        return
    if found_inf is None and not isinstance(factor, Tensor):
        # A number multiplies each tensor in its own dtype, on its own device: one call.
        if foreach:
            _compat.foreach_mul_(params, factor)
        else:
            for p in params:
                p.mul_(factor)
        return
    if found_inf is not None:
        # factor where found_inf == 0, exactly 1 where it is 1.
        factor = 1 + (torch.as_tensor(factor, device=found_inf.device) - 1) * _taken(found_inf)
    for (device_params,) in _by_device(params):
        device = device_params[0].device
        device_factor = factor.to(device) if isinstance(factor, Tensor) else factor
        if foreach:
            _compat.foreach_mul_(device_params, device_factor)
        else:
            for p in device_params:
                p.mul_(device_factor)


def _shrink_towards(
    params: Sequence[Tensor], references: Sequence[Tensor], factor: Scalar, found_inf: Tensor | None
) -> None:
    """p ← p + (1 − factor)·(r − p), no step where ``found_inf`` is set."""
    weight: Scalar = 1 - factor
    if found_inf is not None:
        weight = torch.as_tensor(weight) * _taken(found_inf)
    for p, r in zip(params, references, strict=True):
        if isinstance(weight, Tensor):
            p.add_((r - p).mul_(weight.to(device=p.device, dtype=p.dtype)))
        else:
            p.lerp_(r, weight)


def cautious_shrink(
    params: Sequence[Tensor],
    before: Sequence[Tensor],
    amount: Scalar,
    *,
    found_inf: Tensor | None = None,
) -> None:
    """Cautious decoupled decay after the base update: p' ← p' − amount·p·𝟙[(p − p')·p ≥ 0].

    Args:
        params: the weights after the base update (p'), changed in place.
        before: the same weights before it (p).
        amount: s_t·λ, the decay of one step.
        found_inf: GradScaler's overflow flag; where it is set the base update skipped
            the step, and so does the decay.
    """
    if not params:
        return
    if found_inf is not None:
        amount = torch.as_tensor(amount) * _taken(found_inf)
    for p, p0 in zip(params, before, strict=True):
        # Δ·p ≥ 0: the step moved p towards zero (or did not move it), as decay would.
        agrees = (p0 - p).mul_(p0).ge_(0)
        decay = p0.mul(agrees)
        if isinstance(amount, Tensor):
            p.sub_(decay.mul_(amount.to(device=p.device, dtype=p.dtype)))
        else:
            p.sub_(decay, alpha=amount)


def add_coupled_decay(
    grads: Sequence[Tensor],
    params: Sequence[Tensor],
    weight_decay: Scalar,
    *,
    maximize: bool = False,
    grad_scale: Tensor | None = None,
    foreach: bool = True,
    references: Sequence[Tensor] | None = None,
) -> list[Tensor]:
    """Coupled L2: new gradients g + λ·p (``grads`` are left untouched).

    With ``maximize`` the base update ascends −g, so the penalty enters as g − λ·p and
    still pulls the weights towards zero. With ``grad_scale`` (gradients still scaled
    by ``GradScaler``) the penalty is scaled alike. With ``references``, g + λ·(p − r).
    """
    if references is not None:
        params = [p - r for p, r in zip(params, references, strict=True)]
    alpha: Scalar = -weight_decay if maximize else weight_decay
    if grad_scale is not None:
        alpha = grad_scale * alpha
    out: list[Tensor] = [None] * len(grads)  # type: ignore[list-item]
    positions = list(range(len(grads)))
    for device_grads, device_params, device_pos in _by_device(grads, params, positions):
        device_alpha = alpha.to(device_grads[0].device) if isinstance(alpha, Tensor) else alpha
        if foreach and not isinstance(device_alpha, Tensor):
            new = _compat.foreach_add(device_grads, device_params, alpha=device_alpha)
        elif foreach:
            scaled = _compat.foreach_mul(device_params, device_alpha)
            new = _compat.foreach_add(device_grads, scaled)
        else:
            new = [g + device_alpha * p for g, p in zip(device_grads, device_params, strict=True)]
        for i, g in zip(device_pos, new, strict=True):
            out[i] = g
    return out
