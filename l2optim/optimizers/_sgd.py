"""SGD's family: ``SGD`` and ``SGDW``, and everything particular to them.

What its base can do (:data:`BASE`), its one-pass updates under ``fused=True`` (compiled,
or l2optim's Triton kernel), how a checkpoint of it continues in ``torch.optim.SGD``,
and its update on stacked tensors (:class:`FunctionalSGD`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from l2optim import _compat
from l2optim.optimizers import _compiled, _triton
from l2optim.optimizers._functional import FunctionalUpdate, register_functional
from l2optim.optimizers._mixin import WeightDecayMixin, document_weight_decay
from l2optim.optimizers._planner import BaseRecord
from l2optim.optimizers._torch_state import per_unit_lr, refuse_unless, register_translation, value

__all__ = ["BASE", "SGD", "SGDW", "FunctionalSGD", "update"]


def _creates_buffers_before_reading_overflow(
    group: Mapping[str, Any], view: Mapping[str, Any], state: Mapping[Tensor, Any]
) -> bool:
    # torch's fused SGD kernel creates the momentum buffers (uninitialised) before it
    # looks at found_inf: a first step that GradScaler marks as overflowed would leave
    # garbage buffers that the next step takes for real ones. So, only on a step that
    # creates buffers, the flag is read on the host and the step skipped.
    return (
        bool({**group, **view}.get("fused"))
        and group["momentum"] != 0
        and any(
            p.grad is not None and state.get(p, {}).get("momentum_buffer") is None
            for p in group["params"]
        )
    )


#: What torch's SGD can do.
BASE = BaseRecord(
    decay_is_coupled=True,
    fused_kernel=True,
    triton_kernel=True,
    # Same arithmetic, except that torch's foreach Nesterov step adds the buffer into
    # p.grad in place (when no coupled decay made a copy first); the loop does not.
    foreach_matches_loop=lambda group: not group["nesterov"],
    # p·(1 − s·λ) − lr·g = p − lr·(g + (s·λ/lr)·p): without momentum the two forms are
    # one update, and torch's kernels (fused included) can do it.
    decoupled_in_base=lambda group: group["momentum"] == 0,
    # torch has no fused kernel for decoupled decay with momentum.
    compiled_when_fused=lambda group, decoupled: decoupled and group["momentum"] != 0,
    overflow_read_on_host=_creates_buffers_before_reading_overflow,
)


@document_weight_decay
class SGD(WeightDecayMixin, torch.optim.SGD):
    r"""Stochastic gradient descent with coupled L2 or decoupled weight decay.

    A drop-in :class:`torch.optim.SGD` (same arguments, defaults and errors) with:

    .. math::
        \begin{aligned}
        &\textbf{coupled:} && g_t \leftarrow g_t + \lambda\,\theta_{t-1} \\
        &\textbf{decoupled:} && \theta_{t-1} \leftarrow \theta_{t-1}\,(1 - s_t\lambda) \\
        & && m_t \leftarrow \mu\, m_{t-1} + (1-d)\, g_t \quad (m_1 = g_1) \\
        & && \theta_t \leftarrow \theta_{t-1} - \gamma_t\, (g_t + \mu m_t
             \text{ if nesterov else } m_t)
        \end{aligned}

    Without momentum, decoupled decay with ``weight_decay_scaling="lr"`` is coupled
    decay, step for step. With momentum μ and dampening d the two share the ridge fixed
    point when the coupled λ is s·λ·(1 − μ)/(lr·(1 − d)), i.e. (1 − μ)·λ/(1 − d) with
    the default scaling (:func:`l2optim.conversions.coupled_from_decoupled`); the
    trajectories differ.
    """

    _base = BASE

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float | Tensor = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
        weight_decay_scaling: str = "lr",
        cautious_weight_decay: bool = False,
    ) -> None:
        self._prepare_weight_decay(
            weight_decay, decoupled_weight_decay, weight_decay_scaling, cautious_weight_decay
        )
        super().__init__(
            params,
            lr,
            momentum,
            dampening,
            weight_decay,
            nesterov,
            maximize=maximize,
            foreach=foreach,
            differentiable=differentiable,
            fused=fused,
        )

    def _kernel_update(self, group, params, factor, grad_scale, found_inf):
        with_momentum = group["momentum"] != 0
        buffers = [self.state[p].get("momentum_buffer") for p in params] if with_momentum else []
        _triton.sgd_step(
            params,
            [p.grad for p in params],
            buffers,
            lr=group["lr"],
            weight_decay=self._coupled_weight_decay(group),
            momentum=group["momentum"],
            dampening=group["dampening"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
            decay_factor=factor,
            grad_scale=grad_scale,
            found_inf=found_inf,
        )
        for p, buffer in zip(params, buffers, strict=True):
            self.state[p]["momentum_buffer"] = buffer

    def _compiled_update(self, group, factor):
        scalars = self._own_update_scalars(group, factor)
        if scalars is None:
            return
        _, lr, factor, grad_scale = scalars
        params: list[Tensor] = []
        grads: list[Tensor] = []
        buffers: list[Tensor | None] = []
        self._init_group(group, params, grads, buffers)
        kwargs = {
            "lr": lr,
            "factor": factor,
            "grad_scale": grad_scale,
            "weight_decay": 0.0,
            "momentum": group["momentum"],
            "dampening": group["dampening"],
            "nesterov": group["nesterov"],
            "maximize": group["maximize"],
        }
        if any(b is None for b in buffers):
            # The first step creates the buffers; compiling it would cost a second compile.
            update(params, grads, buffers, **kwargs)
        else:
            _compiled.run_compiled(update, params, grads, buffers, **kwargs)
        for p, buffer in zip(params, buffers, strict=True):
            self.state[p]["momentum_buffer"] = buffer


@document_weight_decay
class SGDW(SGD):
    """:class:`SGD` with decoupled weight decay by default."""

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float | Tensor = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = True,
        weight_decay_scaling: str = "lr",
        cautious_weight_decay: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr,
            momentum,
            dampening,
            weight_decay,
            nesterov,
            maximize=maximize,
            foreach=foreach,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=decoupled_weight_decay,
            weight_decay_scaling=weight_decay_scaling,
            cautious_weight_decay=cautious_weight_decay,
        )


# -- the one-pass update that fused=True compiles ------------------------------------------


def update(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: Tensor,
    factor: Tensor | None,
    grad_scale: Tensor | None,
    weight_decay: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    """Decoupled decay (p ← p·factor), then torch's multi-tensor SGD (with momentum, where
    ``fused=True`` compiles it; any, on stacked tensors)."""
    grads = _compiled.unscale_and_decay(params, grads, factor, grad_scale)
    _compat.functional_sgd(
        params,
        grads,
        momentum_buffers,
        foreach=True,
        weight_decay=weight_decay,
        momentum=momentum,
        lr=lr,
        dampening=dampening,
        nesterov=nesterov,
        maximize=maximize,
    )


# -- the way back to torch.optim.SGD --------------------------------------------------------


def _to_torch_group(index: int, group: dict[str, Any], approximate: bool) -> dict[str, Any]:
    lr, momentum = value(group["lr"]), group["momentum"]
    if momentum == 0:
        return {"weight_decay": per_unit_lr(index, group, approximate)}
    refuse_unless(
        approximate,
        index,
        "decoupled SGD with momentum follows another trajectory than any coupled SGD; "
        "approximate=True gives the coupled weight_decay with the same fixed point",
    )
    from l2optim import conversions  # conversions stands on this half: imported late

    coupled = conversions.coupled_from_decoupled(
        value(group["weight_decay"]),
        lr=lr,
        momentum=momentum,
        dampening=group["dampening"],
        weight_decay_scaling=group["weight_decay_scaling"],
        lr_ref=value(group["lr_ref"]),
    )
    return {"weight_decay": coupled}


register_translation(
    torch.optim.SGD,
    signature={"momentum", "dampening", "nesterov"},
    translate=_to_torch_group,
    unknown_to_torch=("decoupled_weight_decay",),
)


# -- its update on stacked tensors ----------------------------------------------------------


class FunctionalSGD(FunctionalUpdate):
    """torch's SGD (momentum, dampening, Nesterov) with λ = 0."""

    settings_read = frozenset({"lr", "momentum", "dampening", "nesterov", "maximize"})

    # No state before the first step: torch's update makes the momentum buffer then.

    def step(self, params, grads, states, step):
        s = self.settings
        buffers = [state.get("momentum_buffer") for state in states]
        # The compiled update's code, uncompiled: torch's foreach SGD, the loop's arithmetic.
        update(
            params,
            list(grads),
            buffers,
            lr=s["lr"],
            factor=None,
            grad_scale=None,
            weight_decay=0.0,
            momentum=s["momentum"],
            dampening=s["dampening"],
            nesterov=s["nesterov"],
            maximize=s["maximize"],
        )
        if s["momentum"] != 0:
            for state, buffer in zip(states, buffers, strict=True):
                state["momentum_buffer"] = buffer


register_functional(torch.optim.SGD, FunctionalSGD)
