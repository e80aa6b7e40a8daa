"""Adam's family: ``Adam`` and ``AdamW``, and everything particular to them.

What its base can do (:data:`BASE`), its one-pass update under ``fused=True`` with
l2optim's Triton kernel (torch's own fused kernel covers every other case), how a
checkpoint of it continues in ``torch.optim.Adam``/``AdamW``, and its update on stacked
tensors (:class:`FunctionalAdam`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from l2optim import _compat
from l2optim.optimizers import _triton
from l2optim.optimizers._functional import FunctionalUpdate, register_functional
from l2optim.optimizers._mixin import WeightDecayMixin, document_weight_decay
from l2optim.optimizers._planner import BaseRecord
from l2optim.optimizers._torch_state import per_unit_lr, register_translation

__all__ = ["BASE", "Adam", "AdamW", "FunctionalAdam"]

#: What torch's Adam can do.
BASE = BaseRecord(
    decay_is_coupled=True,
    fused_kernel=True,
    # State made by torch's unfused default keeps its step counts on the CPU, where the
    # fused kernel cannot read them: such a group stays on the unfused path.
    fused_kernel_needs_state_on_device=True,
    triton_kernel=True,
    # torch's foreach Adam refuses a tensor lr or betas unless capturable.
    foreach_matches_loop=lambda group: not any(
        isinstance(x, Tensor) for x in (group["lr"], *group["betas"])
    ),
    # The group's decoupled_weight_decay is torch's flag too: its kernels decay by lr·λ,
    # so they need λ·s/lr.
    decoupled_in_base=lambda group: True,
)


@document_weight_decay
class Adam(WeightDecayMixin, torch.optim.Adam):
    r"""Adam with coupled L2 or decoupled weight decay (AdamW).

    A drop-in :class:`torch.optim.Adam` (same arguments, defaults and errors) with:

    .. math::
        \begin{aligned}
        &\textbf{coupled:} && g_t \leftarrow g_t + \lambda\,\theta_{t-1} \\
        &\textbf{decoupled:} && \theta_{t-1} \leftarrow \theta_{t-1}\,(1 - s_t\lambda) \\
        & && m_t \leftarrow \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
             v_t \leftarrow \beta_2 v_{t-1} + (1-\beta_2) g_t^2 \\
        & && \theta_t \leftarrow \theta_{t-1} - \gamma_t\,
             \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon}
        \end{aligned}

    Decoupled decay runs on torch's own AdamW kernels, with λ expressed per step in
    torch's convention λ·s_t/lr_t. Full batch, coupled Adam converges to ridge
    regression; decoupled Adam to the least-squares solution inside the box
    ‖θ‖∞ ≤ lr/(s·λ), which is 1/λ with the default scaling ``"lr"``.
    """

    _base = BASE

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
        weight_decay_scaling: str = "lr",
        cautious_weight_decay: bool = False,
    ) -> None:
        self._prepare_weight_decay(
            weight_decay, decoupled_weight_decay, weight_decay_scaling, cautious_weight_decay
        )
        # Called by name: AdamW's MRO puts torch.optim.AdamW next, whose signature
        # lacks decoupled_weight_decay.
        torch.optim.Adam.__init__(
            self,
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=decoupled_weight_decay,
        )

    def _kernel_update(self, group, params, factor, grad_scale, found_inf):
        states = [self.state[p] for p in params]
        for p, state in zip(params, states, strict=True):
            _triton.init_adam_state(p, state, amsgrad=group["amsgrad"])
        beta1, beta2 = group["betas"]
        _triton.adam_step(
            params,
            [p.grad for p in params],
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [s["max_exp_avg_sq"] for s in states] if group["amsgrad"] else [],
            [s["step"] for s in states],
            amsgrad=group["amsgrad"],
            beta1=beta1,
            beta2=beta2,
            lr=group["lr"],
            weight_decay=self._coupled_weight_decay(group),
            eps=group["eps"],
            maximize=group["maximize"],
            decay_factor=factor,
            grad_scale=grad_scale,
            found_inf=found_inf,
        )


@document_weight_decay
class AdamW(Adam, torch.optim.AdamW):
    """:class:`Adam` with decoupled weight decay by default; a :class:`torch.optim.AdamW`."""

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        betas: tuple[float | Tensor, float | Tensor] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = True,
        weight_decay_scaling: str = "lr",
        cautious_weight_decay: bool = False,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=decoupled_weight_decay,
            weight_decay_scaling=weight_decay_scaling,
            cautious_weight_decay=cautious_weight_decay,
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        # torch.optim.AdamW forces decoupled decay on load; here it is a setting that a
        # checkpoint of this class records, so keep what was saved.
        flags = [g.get("decoupled_weight_decay") for g in state.get("param_groups", [])]
        super().__setstate__(state)
        for group, flag in zip(self.param_groups, flags, strict=True):
            if flag is not None:
                group["decoupled_weight_decay"] = flag


# -- the way back to torch.optim.Adam -------------------------------------------------------


def _to_torch_group(index: int, group: dict[str, Any], approximate: bool) -> dict[str, Any]:
    # torch's AdamW kernels decay by lr·λ: λ·s/lr is the same decay.
    return {"weight_decay": per_unit_lr(index, group, approximate)}


# torch's Adam has decoupled_weight_decay itself.
register_translation(torch.optim.Adam, signature={"betas", "amsgrad"}, translate=_to_torch_group)


# -- its update on stacked tensors ----------------------------------------------------------


class FunctionalAdam(FunctionalUpdate):
    """torch's single-tensor Adam (AMSGrad, maximize) with λ = 0."""

    settings_read = frozenset({"lr", "betas", "eps", "amsgrad", "maximize"})

    def new_state(self, param: Tensor) -> dict[str, Tensor]:
        names = ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if self.settings["amsgrad"] else ())
        return {name: torch.zeros_like(param) for name in names}

    def step(self, params, grads, states, step):
        s = self.settings
        beta1, beta2 = s["betas"]
        _compat.functional_adam(
            params,
            grads,
            [state["exp_avg"] for state in states],
            [state["exp_avg_sq"] for state in states],
            [state["max_exp_avg_sq"] for state in states] if s["amsgrad"] else [],
            # torch counts the step itself, from the count before it.
            [torch.tensor(float(step - 1), dtype=_compat.step_dtype()) for _ in params],
            foreach=False,
            amsgrad=s["amsgrad"],
            beta1=beta1,
            beta2=beta2,
            lr=s["lr"],
            weight_decay=0.0,
            eps=s["eps"],
            maximize=s["maximize"],
        )


register_functional(torch.optim.Adam, FunctionalAdam)
