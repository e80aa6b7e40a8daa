"""SGD, Adam and RMSprop with both forms of weight decay.

Every class here is its ``torch.optim`` namesake plus two per-group settings,
``decoupled_weight_decay`` and ``weight_decay_scaling`` (and its reference lr, ``lr_ref``):
:class:`l2optim.optimizers._mixin.WeightDecayMixin` over the torch class. What is particular
to each base lives here: which decoupled decay its own kernels can do, and how its whole
update runs as one pass under ``fused=True``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from l2optim import _compat
from l2optim.optimizers import _compiled, _triton
from l2optim.optimizers._mixin import WeightDecayMixin, document_weight_decay, lr_scaled

__all__ = ["SGD", "SGDW", "Adam", "AdamW", "RMSprop", "RMSpropW"]


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

    _base_decay_is_coupled = True
    _base_has_fused_kernel = True

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
    ) -> None:
        self._prepare_weight_decay(weight_decay, decoupled_weight_decay, weight_decay_scaling)
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

    def _decoupled_in_base(self, group, weight_decay, scale):
        # p·(1 − s·λ) − lr·g = p − lr·(g + (s·λ/lr)·p): without momentum the two forms
        # are one update, and torch's kernels (fused included) can do it.
        if group["momentum"] != 0:
            return None
        coupled = lr_scaled(group, weight_decay, scale)
        return None if coupled is None else {"weight_decay": coupled}

    def _foreach_matches_loop(self, group):
        # Same arithmetic, except that torch's foreach Nesterov step adds the buffer into
        # p.grad in place (when no coupled decay made a copy first); the loop does not.
        return not group["nesterov"]

    def _skips_for_overflow(self, plans, found_inf):
        # torch's fused SGD kernel creates the momentum buffers (uninitialised) before it
        # looks at found_inf: a first step that GradScaler marks as overflowed would leave
        # garbage buffers that the next step takes for real ones. So, only on a step that
        # creates buffers, the flag is read on the host and the step skipped here. (Our
        # own updates read the flag themselves.)
        if not any(
            not plan.own_update
            and {**group, **plan.base_view}.get("fused")
            and group["momentum"] != 0
            and any(
                p.grad is not None and self.state.get(p, {}).get("momentum_buffer") is None
                for p in group["params"]
            )
            for group, plan in zip(self.param_groups, plans, strict=True)
        ):
            return False
        return bool(found_inf.item())

    def _needs_own_update(self, group, decoupled):
        # torch has no fused kernel for decoupled decay with momentum.
        compiled = bool(group["fused"]) and decoupled and group["momentum"] != 0
        return compiled or super()._needs_own_update(group, decoupled)

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
            _compiled.sgd_momentum_update(params, grads, buffers, **kwargs)
        else:
            _compiled.run_compiled(_compiled.sgd_momentum_update, params, grads, buffers, **kwargs)
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

    _base_decay_is_coupled = True
    _base_has_fused_kernel = True

    def _foreach_matches_loop(self, group):
        # torch's foreach Adam refuses a tensor lr or betas unless capturable.
        return not any(isinstance(x, Tensor) for x in (group["lr"], *group["betas"]))

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
    ) -> None:
        self._prepare_weight_decay(weight_decay, decoupled_weight_decay, weight_decay_scaling)
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

    def _prefers_fused_kernel(self, group, tensors):
        # State made by torch's unfused default keeps its step counts on the CPU, where
        # the fused kernel cannot read them: such a group stays on the unfused path.
        return super()._prefers_fused_kernel(group, tensors) and all(
            self.state.get(p, {}).get("step", p).device == p.device for p in group["params"]
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

    def _decoupled_in_base(self, group, weight_decay, scale):
        # The group's decoupled_weight_decay is torch's flag too: its kernels decay
        # by lr·λ, so they need λ·s/lr.
        torch_weight_decay = lr_scaled(group, weight_decay, scale)
        return None if torch_weight_decay is None else {"weight_decay": torch_weight_decay}


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
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        # torch.optim.AdamW forces decoupled decay on load; here it is a setting that a
        # checkpoint of this class records, so keep what was saved.
        flags = [g.get("decoupled_weight_decay") for g in state.get("param_groups", [])]
        super().__setstate__(state)
        for group, flag in zip(self.param_groups, flags, strict=True):
            if flag is not None:
                group["decoupled_weight_decay"] = flag


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

    _base_decay_is_coupled = True

    def _foreach_matches_loop(self, group):
        return True

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
    ) -> None:
        self._prepare_weight_decay(weight_decay, decoupled_weight_decay, weight_decay_scaling)
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

    def _needs_own_update(self, group, decoupled):
        # torch has no fused RMSprop: fused=True runs the compiled update (or the kernel).
        return bool(group["fused"])

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
            _compiled.rmsprop_update,
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
        )
