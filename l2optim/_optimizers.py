"""SGD, Adam and RMSprop with both forms of weight decay, and a wrapper for any optimizer.

Every class here is its ``torch.optim`` namesake plus two per-group settings,
``decoupled_weight_decay`` and ``weight_decay_scaling``. The base class does the
update; :mod:`l2optim._decay` does the decay; the mixin decides where the decay
sits in a step:

* coupled, when the base's own ``weight_decay`` is coupled L2: the base does it,
  with its own kernels (single-tensor, foreach or fused), so the numbers are torch's;
* decoupled, when the base has a kernel for the same maths (Adam's decoupled mode;
  SGD without momentum, where decoupled decay *is* coupled decay with λ·s_t/lr_t):
  λ is translated into the base's convention for that step;
* otherwise the mixin applies the rule itself, on the parameters that have a
  gradient, just before the base update, and shows the base a ``weight_decay`` of 0.
"""

from __future__ import annotations

import copyreg
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor

from l2optim import _compat, _decay, _fused, _triton
from l2optim._implementation import GroupTensors, fused_kernel_supports, triton_kernel_runs

__all__ = [
    "SGD",
    "SGDW",
    "Adam",
    "AdamW",
    "RMSprop",
    "RMSpropW",
    "with_weight_decay",
]

_Optimizer = TypeVar("_Optimizer", bound=torch.optim.Optimizer)


def _as_float(x: Any) -> float | None:
    """``x`` as a Python float when that costs no device synchronisation, else None."""
    if isinstance(x, Tensor):
        return float(x) if x.device.type == "cpu" else None
    return float(x)


@dataclass
class _GroupStep:
    """What one step does in one param group."""

    # Group entries the base update sees in place of the stored ones, this step only.
    base_view: dict[str, Any] = field(default_factory=dict)
    # λ for coupled decay applied here (the base cannot), else None.
    coupled: float | Tensor | None = None
    # 1 − s_t·λ for decoupled decay applied here (the base cannot), else None.
    factor: float | Tensor | None = None
    # The whole update runs here, in one pass (compiled, or a kernel), not in the base.
    own_update: bool = False


class _WeightDecayMixin:
    """Both forms of weight decay over a ``torch.optim.Optimizer`` subclass.

    Subclasses call :meth:`_prepare_weight_decay` before ``super().__init__``.
    """

    #: True when the base class's ``weight_decay`` is coupled L2 (all of torch.optim's are).
    _base_decay_is_coupled = False
    #: True when torch has a fused kernel for the base (SGD, Adam): a default may use it.
    _base_has_fused_kernel = False
    #: True when the base's foreach update computes what its per-tensor loop computes,
    #: operation for operation (SGD): a default may use it at no cost in numbers.
    _foreach_is_the_loops_arithmetic = False
    #: The base class's update, without the wrappers of torch's steps (set per subclass).
    _base_update: Callable[..., Any]

    param_groups: list[dict[str, Any]]
    defaults: dict[str, Any]
    state: dict[Tensor, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        mro = cls.__mro__
        base = mro[mro.index(_WeightDecayMixin) + 1]
        cls._base_update = _compat.step_body(base)

    # -- construction -------------------------------------------------------------

    def _prepare_weight_decay(
        self, weight_decay: Any, decoupled_weight_decay: bool, weight_decay_scaling: str
    ) -> None:
        # torch rejects a negative λ itself, with its own message; NaN slips through it.
        if isinstance(weight_decay, float) and math.isnan(weight_decay):
            _decay.check_weight_decay(weight_decay)
        _decay.check_weight_decay_scaling(weight_decay_scaling, decoupled_weight_decay)
        self._weight_decay_defaults = {
            "decoupled_weight_decay": bool(decoupled_weight_decay),
            "weight_decay_scaling": weight_decay_scaling,
        }

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        ours = self.__dict__.pop("_weight_decay_defaults", None)
        if ours is not None:
            # Our settings win over a base's entries of the same name (Adam, NAdam).
            self.defaults.update(ours)
        super().add_param_group(param_group)  # type: ignore[misc]
        index = len(self.param_groups) - 1
        try:
            _check_group(index, self.param_groups[index])
        except ValueError:
            # torch appends the group before we can see its filled-in settings; a
            # refused group must not stay behind in the optimizer.
            self.param_groups.pop()
            raise

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]
        # A checkpoint from the torch.optim class (or an older l2optim) lacks our entries.
        self.defaults.setdefault("decoupled_weight_decay", False)
        self.defaults.setdefault("weight_decay_scaling", "lr")
        for group in self.param_groups:
            group.setdefault("decoupled_weight_decay", self.defaults["decoupled_weight_decay"])
            group.setdefault("weight_decay_scaling", self.defaults["weight_decay_scaling"])
            if "lr_ref" not in group:
                # An older l2optim kept its reference in initial_lr; a scheduler writes
                # the lr it started from there. Either is a better guess than today's lr.
                group["lr_ref"] = _copy_lr(group.get("initial_lr", group["lr"]))
        # GradScaler may hand over scaled gradients only when every group unscales them
        # itself; torch's own classes forget this on unpickling and fall back to unscaling.
        _compat.set_step_unscales(
            self, bool(self.param_groups) and all(g.get("fused") for g in self.param_groups)
        )

    # -- the step -----------------------------------------------------------------

    @_compat.grad_mode_step
    def step(self, closure: Callable[[], float] | None = None) -> Any:  # type: ignore[override]
        """Perform a single optimization step.

        Args:
            closure: a callable that re-evaluates the model and returns the loss. It
                is called once, before any parameter changes.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # Every group is checked before any parameter changes.
        plans = [self._plan_group(i, group) for i, group in enumerate(self.param_groups)]
        if self._skips_for_overflow(plans):
            return loss
        swapped = self._show_coupled_decay(plans)
        saved = _show_base_view(self.param_groups, plans)
        try:
            self._apply_decoupled_decay(plans)
            self._base_update()
        finally:
            for group, original in zip(self.param_groups, saved, strict=True):
                group.update(original)
            for p, grad in swapped:
                p.grad = grad
        for group, plan in zip(self.param_groups, plans, strict=True):
            if plan.own_update:
                self._own_update(group, plan.factor)
        return loss

    def _plan_group(self, index: int, group: dict[str, Any]) -> _GroupStep:
        weight_decay = group["weight_decay"]
        decays = not (isinstance(weight_decay, (int, float)) and weight_decay == 0)
        decoupled = group["decoupled_weight_decay"] and decays
        factor = scale = None
        if decoupled:
            scale = _decay_scale(index, group)
            factor = _decay.decoupled_factor(scale, weight_decay)
            _check_factor(index, group, factor, scale)
        if self._needs_own_update(group, decoupled):
            return _GroupStep(base_view={"params": []}, factor=factor, own_update=True)
        implementation = self._default_implementation(group)
        if not decays:
            return _GroupStep(base_view=implementation)
        if not decoupled:
            if self._base_decay_is_coupled:
                return _GroupStep(base_view=implementation)
            return _GroupStep(
                base_view={**implementation, **self._without_base_decay(group)},
                coupled=weight_decay,
            )
        in_base = self._decoupled_in_base(group, weight_decay, scale)
        if in_base is not None:
            return _GroupStep(base_view={**implementation, **in_base})
        return _GroupStep(
            base_view={**implementation, **self._without_base_decay(group)}, factor=factor
        )

    def _default_implementation(self, group: dict[str, Any]) -> dict[str, Any]:
        """What the base update runs when the user chose no implementation for the group.

        torch's fused kernel where it is faster; else, where the base's foreach update is
        the same arithmetic as its per-tensor loop, the foreach one (fewer Python calls);
        else torch's own default.
        """
        if (
            not self._base_has_fused_kernel
            or group.get("foreach") is not None
            or group.get("fused") is not None
            or group.get("differentiable")
        ):
            return {}
        if self._prefers_fused_kernel(group):
            return {"fused": True}
        if self._foreach_is_the_loops_arithmetic and self._group_tensors(group).plain:
            return {"foreach": True}
        return {}

    def _prefers_fused_kernel(self, group: dict[str, Any]) -> bool:
        return self._group_tensors(group).fused_by_default

    def _group_tensors(self, group: dict[str, Any]) -> GroupTensors:
        """What the group's tensors allow, cached while its list of parameters is the same.

        The cache is not part of the optimizer's state: a copy works it out again, and
        gets the same answer from the same parameters.
        """
        params = group["params"]
        if torch.compiler.is_compiling():
            return GroupTensors.of(params)  # traced once; a cache would only add guards
        cache = self.__dict__.setdefault("_group_tensors_cache", {})
        hit = cache.get(id(params))
        if hit is None or hit[0] is not params or hit[1] != len(params):
            hit = cache[id(params)] = (params, len(params), GroupTensors.of(params))
        return hit[2]

    def _skips_for_overflow(self, plans: list[_GroupStep]) -> bool:
        """Whether the whole step is skipped here for GradScaler's overflow flag."""
        return False

    def _needs_own_update(self, group: dict[str, Any], decoupled: bool) -> bool:
        """Whether the group's whole update runs here rather than in the base.

        ``fused=True`` asks for one pass: l2optim's Triton kernel where it is switched on,
        or, in modes torch has no fused kernel for, a compiled update (subclasses say).
        """
        return self._runs_triton_kernel(group)

    def _runs_triton_kernel(self, group: dict[str, Any]) -> bool:
        return (
            bool(group.get("fused"))
            and type(self)._kernel_update is not _WeightDecayMixin._kernel_update
            and triton_kernel_runs(group["params"])
        )

    def _own_update(self, group: dict[str, Any], factor: Any) -> None:
        if self._runs_triton_kernel(group):
            params = _decay.with_grad(group["params"])
            if params:
                grad_scale, found_inf = _compat.gradscaler_handoff(self)
                self._kernel_update(group, params, factor, grad_scale, found_inf)
        else:
            self._compiled_update(group, factor)

    def _kernel_update(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        factor: Any,
        grad_scale: Tensor | None,
        found_inf: Tensor | None,
    ) -> None:
        """The group's update by l2optim's Triton kernel (GradScaler's flag on the device)."""
        raise NotImplementedError

    def _compiled_update(self, group: dict[str, Any], factor: Any) -> None:
        raise NotImplementedError

    def _coupled_weight_decay(self, group: dict[str, Any]) -> Any:
        """λ for a kernel's coupled term: the group's, or 0 when its decay is decoupled."""
        return 0.0 if group["decoupled_weight_decay"] else group["weight_decay"]

    def _own_update_scalars(
        self, group: dict[str, Any], factor: Any
    ) -> tuple[list[Tensor], Tensor, Tensor | None, Tensor | None] | None:
        """What a compiled update of ``group`` needs, or None when it has nothing to do.

        ``(params with a gradient, lr, factor, grad_scale)``, the numbers as tensors on
        the parameters' device so that a schedule does not recompile.
        """
        grad_scale, found_inf = _compat.gradscaler_handoff(self)
        # GradScaler's overflow flag decides on the host: one synchronisation per step,
        # as GradScaler itself makes for every unfused optimizer.
        if found_inf is not None and bool(found_inf.item()):
            return None
        params = _decay.with_grad(group["params"])
        if not params:
            return None
        if not fused_kernel_supports(params):
            raise RuntimeError(
                "`fused=True` requires all the params to be dense floating point Tensors of "
                f"supported devices: {_compat.fused_kernel_devices()}"
            )
        lr = _fused.scalar_tensor(group["lr"], params)
        factor = None if factor is None else _fused.scalar_tensor(factor, params)
        return params, lr, factor, grad_scale

    def _use_foreach(self, group: dict[str, Any]) -> bool:
        """Whether the decay itself runs on multi-tensor kernels.

        The decay is one multiply or one add per tensor, the same arithmetic either way,
        so it runs on foreach kernels wherever they apply (torch's CPU default would loop
        in Python), unless the user chose for the group.
        """
        if group.get("foreach") is not None:
            return bool(group["foreach"])
        return not group.get("differentiable", False) and self._group_tensors(group).plain

    def _decoupled_in_base(
        self, group: dict[str, Any], weight_decay: Any, scale: Any
    ) -> dict[str, Any] | None:
        """Group entries that make the base update do decoupled decay itself, or None."""
        return None

    def _without_base_decay(self, group: dict[str, Any]) -> dict[str, Any]:
        return {"weight_decay": 0.0} if "weight_decay" in group else {}

    def _apply_decoupled_decay(self, plans: list[_GroupStep]) -> None:
        _, found_inf = _compat.gradscaler_handoff(self)
        for group, plan in zip(self.param_groups, plans, strict=True):
            if plan.factor is None or plan.own_update:
                continue
            params = _decay.with_grad(group["params"])
            _decay.shrink(
                params, plan.factor, found_inf=found_inf, foreach=self._use_foreach(group)
            )

    def _show_coupled_decay(self, plans: list[_GroupStep]) -> list[tuple[Tensor, Tensor]]:
        """Show the base update g + λ·p in place of g; returns what to put back after."""
        grad_scale, _ = _compat.gradscaler_handoff(self)
        swapped: list[tuple[Tensor, Tensor]] = []
        for group, plan in zip(self.param_groups, plans, strict=True):
            if plan.coupled is None:
                continue
            params = _decay.with_grad(group["params"])
            grads = [p.grad for p in params]
            with torch.no_grad():
                decayed = _decay.add_coupled_decay(
                    grads,
                    params,
                    plan.coupled,
                    maximize=group.get("maximize", False),
                    grad_scale=grad_scale,
                    foreach=self._use_foreach(group),
                )
            for p, g, new in zip(params, grads, decayed, strict=True):
                swapped.append((p, g))
                p.grad = new
        return swapped


def _show_base_view(
    groups: list[dict[str, Any]], plans: list[_GroupStep]
) -> list[dict[str, Any]]:
    """Put each plan's entries in its group; returns the stored entries to restore."""
    saved = []
    for group, plan in zip(groups, plans, strict=True):
        saved.append({key: group[key] for key in plan.base_view})
        group.update(plan.base_view)
    return saved


def _copy_lr(lr: Any) -> Any:
    # Schedulers write a tensor lr in place: a reference must not follow it.
    return lr.clone() if isinstance(lr, Tensor) else lr


def _lr_scaled(group: dict[str, Any], weight_decay: Any, scale: Any) -> float | None:
    """λ in torch's convention, where the decay per step is lr·λ: λ·s_t/lr_t.

    None when that would need a device synchronisation (λ or lr on an accelerator).
    """
    if group["weight_decay_scaling"] == "lr":
        return weight_decay
    values = [_as_float(x) for x in (weight_decay, scale, group["lr"])]
    if any(v is None for v in values) or values[2] == 0:
        return None
    weight_decay, scale, lr = values
    return weight_decay * scale / lr


def _check_group(index: int, group: dict[str, Any]) -> None:
    _decay.check_weight_decay(group["weight_decay"], f"weight_decay in param group {index}")
    _decay.check_weight_decay_scaling(
        group["weight_decay_scaling"], group["decoupled_weight_decay"]
    )
    group.setdefault("lr_ref", _copy_lr(group["lr"]))
    if group["decoupled_weight_decay"] and group["weight_decay_scaling"] == "schedule":
        _decay.check_lr_ref(group["lr_ref"], f"lr_ref in param group {index}")


def _decay_scale(index: int, group: dict[str, Any]) -> Any:
    scaling = group["weight_decay_scaling"]
    if scaling == "schedule":
        _decay.check_lr_ref(group.get("lr_ref"), f"lr_ref in param group {index}")
    return _decay.decay_scale(scaling, group["lr"], group.get("lr_ref"))


def _check_factor(index: int, group: dict[str, Any], factor: Any, scale: Any) -> None:
    value = _as_float(factor)
    if value is not None and not value > 0:
        scaling = group["weight_decay_scaling"]
        s = {
            "lr": f"s = lr = {_show(group['lr'])}",
            "schedule": f"s = lr / lr_ref = {_show(group['lr'])} / {_show(group['lr_ref'])}"
            f" = {_show(scale)}",
            "none": "s = 1",
        }[scaling]
        raise ValueError(
            f"decoupled weight decay in param group {index} would flip the sign of every "
            f"weight: 1 - s*weight_decay = {value:.6g} <= 0 with {s}, "
            f"weight_decay={_show(group['weight_decay'])}, "
            f"weight_decay_scaling={scaling!r}; s*weight_decay must be < 1 (lower "
            f"{'lr or ' if scaling != 'none' else ''}weight_decay"
            f"{' or raise lr_ref' if scaling == 'schedule' else ''}). "
            "No parameter was changed."
        )


def _show(x: Any) -> str:
    value = _as_float(x)
    return repr(x) if value is None else f"{value:.6g}"


_WEIGHT_DECAY_ARGS = """
    Every argument of the torch.optim class is accepted, with the same default and the
    same checks; these are added:

    Args:
        decoupled_weight_decay (bool, keyword-only): decay the weights directly,
            p ← p·(1 − s_t·λ), instead of adding λ·p to the gradient (default: {default}).
        weight_decay_scaling (str, keyword-only): s_t for decoupled decay: ``"lr"``
            (s_t = lr_t, torch's AdamW convention), ``"schedule"`` (s_t = lr_t / lr_ref,
            Loshchilov & Hutter's η_t; ``lr_ref`` is the lr each param group was created
            with, kept in the group and its ``state_dict``; set it in a group to choose
            another) or ``"none"`` (s_t = 1) (default: ``"lr"``).
"""


def _document_weight_decay(cls: type[_Optimizer]) -> type[_Optimizer]:
    """Append the arguments this library adds to a class's docstring."""
    default = "True" if cls.__name__.endswith("W") else "False"
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n" + _WEIGHT_DECAY_ARGS.format(default=default)
    return cls


@_document_weight_decay
class SGD(_WeightDecayMixin, torch.optim.SGD):
    r"""Stochastic gradient descent with coupled L2 or decoupled weight decay.

    A drop-in :class:`torch.optim.SGD` (same arguments, defaults and errors) with:

    .. math::
        \begin{aligned}
        &\textbf{coupled:} && g_t \leftarrow g_t + \lambda\,\theta_{t-1} \\
        &\textbf{decoupled:} && \theta_{t-1} \leftarrow \theta_{t-1}\,(1 - s_t\lambda) \\
        & && b_t \leftarrow \mu\, b_{t-1} + (1-\tau)\, g_t \quad (b_1 = g_1) \\
        & && \theta_t \leftarrow \theta_{t-1} - \gamma_t\, (g_t + \mu b_t
             \text{ if nesterov else } b_t)
        \end{aligned}

    Without momentum, decoupled decay with ``weight_decay_scaling="lr"`` is coupled
    decay, step for step. With momentum μ and dampening τ the two share the ridge fixed
    point when the coupled λ is s·λ·(1 − μ)/(lr·(1 − τ)), i.e. (1 − μ)·λ/(1 − τ) with
    the default scaling (:func:`l2optim.conversions.coupled_from_decoupled`); the
    trajectories differ.
    """

    _base_decay_is_coupled = True
    _base_has_fused_kernel = True
    _foreach_is_the_loops_arithmetic = True

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
        coupled = _lr_scaled(group, weight_decay, scale)
        return None if coupled is None else {"weight_decay": coupled}

    def _skips_for_overflow(self, plans):
        # torch's fused SGD kernel creates the momentum buffers (uninitialised) before it
        # looks at found_inf: a first step that GradScaler marks as overflowed would leave
        # garbage buffers that the next step takes for real ones. So, only on a step that
        # creates buffers, the flag is read on the host and the step skipped here. (Our
        # own updates read the flag themselves.)
        _, found_inf = _compat.gradscaler_handoff(self)
        if found_inf is None or not any(
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
            _fused.sgd_momentum_update(params, grads, buffers, **kwargs)
        else:
            _fused.run_compiled(_fused.sgd_momentum_update, params, grads, buffers, **kwargs)
        for p, buffer in zip(params, buffers, strict=True):
            self.state[p]["momentum_buffer"] = buffer


@_document_weight_decay
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


@_document_weight_decay
class Adam(_WeightDecayMixin, torch.optim.Adam):
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

    def _prefers_fused_kernel(self, group):
        # State made by torch's unfused default keeps its step counts on the CPU, where
        # the fused kernel cannot read them: such a group stays on the unfused path.
        return super()._prefers_fused_kernel(group) and all(
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
        torch_weight_decay = _lr_scaled(group, weight_decay, scale)
        return None if torch_weight_decay is None else {"weight_decay": torch_weight_decay}


@_document_weight_decay
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


@_document_weight_decay
class RMSprop(_WeightDecayMixin, torch.optim.RMSprop):
    r"""RMSprop with coupled L2 or decoupled weight decay.

    A drop-in :class:`torch.optim.RMSprop` (same arguments, defaults and errors) with:

    .. math::
        \begin{aligned}
        &\textbf{coupled:} && g_t \leftarrow g_t + \lambda\,\theta_{t-1} \\
        &\textbf{decoupled:} && \theta_{t-1} \leftarrow \theta_{t-1}\,(1 - s_t\lambda) \\
        & && v_t \leftarrow \alpha v_{t-1} + (1-\alpha) g_t^2, \quad
             \tilde v_t \leftarrow v_t - \bar g_t^2 \text{ if centered} \\
        & && b_t \leftarrow \mu b_{t-1} + g_t/(\sqrt{\tilde v_t} + \epsilon), \quad
             \theta_t \leftarrow \theta_{t-1} - \gamma_t b_t
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
        _fused.run_compiled(
            _fused.rmsprop_update,
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


@_document_weight_decay
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


def with_weight_decay(optimizer_class: type[_Optimizer]) -> type[_Optimizer]:
    """A subclass of ``optimizer_class`` that offers both forms of weight decay.

    The subclass takes the base's arguments plus keyword-only ``decoupled_weight_decay``
    and ``weight_decay_scaling`` (and ``weight_decay`` if the base has none). The decay
    is applied here, before the base update, in both forms; the base always sees a
    ``weight_decay`` of 0, so the base's own meaning of it does not matter.

    The same base always gives the same class, and the class and its instances pickle
    (``torch.save(optimizer)``, ``copy.deepcopy``, skorch): unpickling makes the class
    again from its base.

    The closure, if given, is evaluated once before the update: optimizers that call
    it several times per step (LBFGS) are not supported.

    Example:
        >>> AdagradW = with_weight_decay(torch.optim.Adagrad)
        >>> opt = AdagradW(model.parameters(), lr=0.1, weight_decay=1e-2,
        ...                decoupled_weight_decay=True)
    """
    if not (
        isinstance(optimizer_class, type) and issubclass(optimizer_class, torch.optim.Optimizer)
    ):
        raise TypeError(
            f"optimizer_class must be a torch.optim.Optimizer subclass, got {optimizer_class!r}"
        )
    if issubclass(optimizer_class, torch.optim.LBFGS):
        raise TypeError(
            "LBFGS re-evaluates its closure within a step; it cannot take weight decay here"
        )
    made = _WITH_WEIGHT_DECAY.get(optimizer_class)
    if made is None:
        made = _WITH_WEIGHT_DECAY[optimizer_class] = _make_with_weight_decay(optimizer_class)
    return made


#: The classes :func:`with_weight_decay` made, by base.
_WITH_WEIGHT_DECAY: dict[type, type] = {}


class _MadeByWithWeightDecay(type):
    """The metaclass of the classes :func:`with_weight_decay` makes.

    A class made at run time cannot be found by name when unpickled; it pickles as the
    call that makes it (registered with :mod:`copyreg` below).
    """

    _weight_decay_base: type


def _reduce_made_class(cls: _MadeByWithWeightDecay) -> tuple[Any, tuple[type]]:
    return with_weight_decay, (cls._weight_decay_base,)


def _metaclass_for(base: type) -> type:
    """``_MadeByWithWeightDecay``, combined with the base's own metaclass if it has one."""
    if type(base) is type:
        return _MadeByWithWeightDecay
    name = f"_MadeByWithWeightDecay_{type(base).__name__}"
    meta = type(name, (_MadeByWithWeightDecay, type(base)), {})
    copyreg.pickle(meta, _reduce_made_class)
    return meta


copyreg.pickle(_MadeByWithWeightDecay, _reduce_made_class)


def _make_with_weight_decay(optimizer_class: type[_Optimizer]) -> type[_Optimizer]:
    base_signature = inspect.signature(optimizer_class)
    base_takes_weight_decay = "weight_decay" in base_signature.parameters

    def __init__(
        self,
        params: Any,
        *args: Any,
        decoupled_weight_decay: bool = False,
        weight_decay_scaling: str = "lr",
        **kwargs: Any,
    ) -> None:
        if base_takes_weight_decay:
            weight_decay = base_signature.bind(params, *args, **kwargs)
            weight_decay = weight_decay.arguments.get("weight_decay", 0.0)
        else:
            weight_decay = kwargs.pop("weight_decay", 0.0)
            _decay.check_weight_decay(weight_decay)
        self._prepare_weight_decay(weight_decay, decoupled_weight_decay, weight_decay_scaling)
        if not base_takes_weight_decay:
            self._weight_decay_defaults["weight_decay"] = weight_decay
        optimizer_class.__init__(self, params, *args, **kwargs)

    namespace = {
        "__init__": __init__,
        "__doc__": f"{optimizer_class.__name__} with coupled L2 or decoupled weight decay."
        + _WEIGHT_DECAY_ARGS.format(default="False"),
        "__module__": __name__,
        "__qualname__": f"with_weight_decay({optimizer_class.__qualname__})",
        "_weight_decay_base": optimizer_class,
    }
    metaclass = _metaclass_for(optimizer_class)
    return metaclass(optimizer_class.__name__, (_WeightDecayMixin, optimizer_class), namespace)
