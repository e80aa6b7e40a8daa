"""RMSprop's family: ``RMSprop`` and ``RMSpropW``, and everything particular to them.

What its base can do (:data:`BASE`), its one-pass updates under ``fused=True``
(compiled, or l2optim's Triton kernel; torch has no fused RMSprop), why a decoupled
checkpoint of it has no ``torch.optim.RMSprop`` equivalent, and its update on stacked
tensors (:class:`FunctionalRMSprop`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from l2optim import _compat
from l2optim.optimizers import _compiled, _triton
from l2optim.optimizers._functional import FunctionalUpdate, register_functional
from l2optim.optimizers._mixin import WeightDecayMixin, document_weight_decay
from l2optim.optimizers._planner import BaseRecord
from l2optim.optimizers._torch_state import register_translation

__all__ = ["BASE", "RMSprop", "RMSpropW", "FunctionalRMSprop", "update"]

#: What torch's RMSprop can do.
BASE = BaseRecord(
    decay_is_coupled=True,
    triton_kernel=True,
    foreach_matches_loop=lambda group: True,
    # torch has no fused RMSprop: fused=True runs the compiled update (or the kernel).
    compiled_when_fused=lambda group, decoupled: True,
)


@document_weight_decay
class RMSprop(WeightDecayMixin, torch.optim.RMSprop):
    r"""RMSprop with coupled L2 or decoupled weight decay.

    A drop-in :class:`torch.optim.RMSprop` (same arguments, defaults and errors) with:

    .. math::
        \begin{aligned}
        &\textbf{coupled:} && g_t \leftarrow g_t + \lambda\,\theta_{t-1} \\
        &\textbf{decoupled:} && \theta_{t-1} \leftarrow \theta_{t-1}\,(1 - s_t\lambda) \\
        & && v_t \leftarrow \alpha v_{t-1} + (1-\alpha) g_t^2, \quad
             \tilde v_t \leftarrow v_t - \bar g_t^2 \text{ if centered} \\
        & && u_t \leftarrow \mu u_{t-1} + g_t/(\sqrt{\tilde v_t} + \epsilon), \quad
             \theta_t \leftarrow \theta_{t-1} - \gamma_t u_t
             \quad (\mu = 0:\ \theta_t \leftarrow \theta_{t-1} - \gamma_t g_t/(\sqrt{\tilde v_t}+\epsilon))
        \end{aligned}

    Full batch, coupled RMSprop converges to ridge regression. Decoupled RMSprop (default
    scaling) approaches the least-squares solution inside the box ‖θ‖∞ ≤ 1/λ without
    momentum, ‖θ‖∞ ≤ 1/((1 − μ)·λ) with momentum μ; centred, it has no such box (v − ḡ²
    vanishes as the gradient settles) and ends near plain least squares.

    torch has no decoupled RMSprop and no fused RMSprop kernel; ``fused=True`` runs
    one compiled multi-tensor update for every mode.
    """

    _base = BASE

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
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
            alpha,
            eps,
            weight_decay,
            momentum,
            centered,
            capturable,
            foreach,
            maximize,
            differentiable,
        )
        # torch's RMSprop has no ``fused``: it is checked here as torch checks its own.
        if fused:
            if differentiable:
                raise RuntimeError("`fused` does not support `differentiable`")
            if foreach:
                raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
        self.defaults["fused"] = fused
        for group in self.param_groups:
            group.setdefault("fused", fused)
        _compat.set_step_unscales(self, bool(fused))

    def __setstate__(self, state: dict[str, Any]) -> None:
        for group in state.get("param_groups", []):
            group.setdefault("fused", None)  # a checkpoint of torch's RMSprop
        state.get("defaults", {}).setdefault("fused", None)
        super().__setstate__(state)

    def _kernel_update(self, group, params, factor, grad_scale, found_inf):
        states = [self.state[p] for p in params]
        for p, state in zip(params, states, strict=True):
            _triton.init_rmsprop_state(
                p, state, momentum=group["momentum"], centered=group["centered"]
            )
        _triton.rmsprop_step(
            params,
            [p.grad for p in params],
            [s["square_avg"] for s in states],
            [s["grad_avg"] for s in states] if group["centered"] else [],
            [s["momentum_buffer"] for s in states] if group["momentum"] > 0 else [],
            [s["step"] for s in states],
            lr=group["lr"],
            alpha=group["alpha"],
            eps=group["eps"],
            weight_decay=self._coupled_weight_decay(group),
            momentum=group["momentum"],
            centered=group["centered"],
            maximize=group["maximize"],
            decay_factor=factor,
            grad_scale=grad_scale,
            found_inf=found_inf,
        )

    def _compiled_update(self, group, factor):
        scalars = self._own_update_scalars(group, factor)
        if scalars is None:
            return
        _, lr, factor, grad_scale = scalars
        lists: tuple[list[Tensor], ...] = ([], [], [], [], [], [])
        params, grads, square_avgs, buffers, grad_avgs, steps = lists
        self._init_group(group, params, grads, square_avgs, buffers, grad_avgs, steps)
        _compiled.run_compiled(
            update,
            params,
            grads,
            square_avgs,
            grad_avgs,
            buffers,
            steps,
            lr=lr,
            factor=factor,
            grad_scale=grad_scale,
            weight_decay=0.0 if group["decoupled_weight_decay"] else group["weight_decay"],
            alpha=group["alpha"],
            eps=group["eps"],
            momentum=group["momentum"],
            centered=group["centered"],
            maximize=group["maximize"],
        )


@document_weight_decay
class RMSpropW(RMSprop):
    """:class:`RMSprop` with decoupled weight decay by default."""

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        *,
        fused: bool | None = None,
        decoupled_weight_decay: bool = True,
        weight_decay_scaling: str = "lr",
        cautious_weight_decay: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr,
            alpha,
            eps,
            weight_decay,
            momentum,
            centered,
            capturable,
            foreach,
            maximize,
            differentiable,
            fused=fused,
            decoupled_weight_decay=decoupled_weight_decay,
            weight_decay_scaling=weight_decay_scaling,
            cautious_weight_decay=cautious_weight_decay,
        )


# -- the one-pass update that fused=True compiles ------------------------------------------


def update(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor],
    momentum_buffers: list[Tensor],
    steps: list[Tensor],
    *,
    lr: Tensor,
    factor: Tensor | None,
    grad_scale: Tensor | None,
    weight_decay: float,
    alpha: float,
    eps: float,
    momentum: float,
    centered: bool,
    maximize: bool,
) -> None:
    """Decoupled decay (p ← p·factor), then torch's multi-tensor RMSprop."""
    grads = _compiled.unscale_and_decay(params, grads, factor, grad_scale)
    _compat.functional_rmsprop(
        params,
        grads,
        square_avgs,
        grad_avgs,
        momentum_buffers,
        steps,
        foreach=True,
        maximize=maximize,
        # Compiled, torch's capturable branch keeps the tensor lr a tensor; the other
        # branch turns it into a scalar that the compiled kernel holds in float32.
        capturable=torch.compiler.is_compiling(),
        lr=lr,
        alpha=alpha,
        eps=eps,
        weight_decay=weight_decay,
        momentum=momentum,
        centered=centered,
    )


# -- the way back to torch.optim.RMSprop ----------------------------------------------------


def _to_torch_group(index: int, group: dict[str, Any], approximate: bool) -> dict[str, Any]:
    raise ValueError(
        f"param group {index}: torch's RMSprop has no decoupled weight decay, and no coupled "
        "weight_decay shares its fixed point (decoupled RMSprop ends in a box, not at "
        "ridge); resume with l2optim.RMSprop, or set decoupled_weight_decay=False first"
    )


register_translation(
    torch.optim.RMSprop,
    signature={"alpha", "centered"},
    translate=_to_torch_group,
    unknown_to_torch=("decoupled_weight_decay", "fused"),
)


# -- its update on stacked tensors ----------------------------------------------------------


class FunctionalRMSprop(FunctionalUpdate):
    """torch's RMSprop (momentum, centring, maximize) with λ = 0."""

    settings_read = frozenset({"lr", "alpha", "eps", "momentum", "centered", "maximize"})

    def new_state(self, param: Tensor) -> dict[str, Tensor]:
        names = ("square_avg",) + (("momentum_buffer",) if self.settings["momentum"] > 0 else ())
        names += ("grad_avg",) if self.settings["centered"] else ()
        return {name: torch.zeros_like(param) for name in names}

    def step(self, params, grads, states, step):
        s = self.settings
        # The compiled update's code, uncompiled: torch's foreach RMSprop, the loop's
        # arithmetic.
        update(
            params,
            list(grads),
            [state["square_avg"] for state in states],
            [state["grad_avg"] for state in states] if s["centered"] else [],
            [state["momentum_buffer"] for state in states] if s["momentum"] > 0 else [],
            [torch.tensor(float(step - 1), dtype=_compat.step_dtype()) for _ in params],
            lr=s["lr"],
            factor=None,
            grad_scale=None,
            weight_decay=0.0,
            alpha=s["alpha"],
            eps=s["eps"],
            momentum=s["momentum"],
            centered=s["centered"],
            maximize=s["maximize"],
        )


register_functional(torch.optim.RMSprop, FunctionalRMSprop)
