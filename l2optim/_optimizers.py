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

import inspect
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor
from torch.optim.optimizer import _default_to_fused_or_foreach

from l2optim import _decay
from l2optim._fused import FusedStepMixin

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
class _GroupDecay:
    """What one step does about decay in one param group."""

    # Group entries the base update sees in place of the stored ones, this step only.
    base_view: dict[str, Any] = field(default_factory=dict)
    # λ for coupled decay applied here (the base cannot), else None.
    coupled: float | Tensor | None = None
    # 1 − s_t·λ for decoupled decay applied here (the base cannot), else None.
    factor: float | Tensor | None = None
    # The whole update runs as one compiled step instead of the base's.
    compiled: bool = False


class _WeightDecayMixin:
    """Both forms of weight decay over a ``torch.optim.Optimizer`` subclass.

    Subclasses call :meth:`_prepare_weight_decay` before ``super().__init__``.
    """

    #: True when the base class's ``weight_decay`` is coupled L2 (all of torch.optim's are).
    _base_decay_is_coupled = False

    param_groups: list[dict[str, Any]]
    defaults: dict[str, Any]
    state: dict[Tensor, Any]

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
        # A checkpoint from the torch.optim class has no entries of ours.
        self.defaults.setdefault("decoupled_weight_decay", False)
        self.defaults.setdefault("weight_decay_scaling", "lr")
        for group in self.param_groups:
            group.setdefault("decoupled_weight_decay", self.defaults["decoupled_weight_decay"])
            group.setdefault("weight_decay_scaling", self.defaults["weight_decay_scaling"])

    # -- the step -----------------------------------------------------------------

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
        plans = [self._plan_decay(i, group) for i, group in enumerate(self.param_groups)]
        with self._grads_with_coupled_decay(plans), _base_view(self.param_groups, plans):
            self._apply_decoupled_decay(plans)
            self._base_step()
        with torch.no_grad():
            for group, plan in zip(self.param_groups, plans, strict=True):
                if plan.compiled:
                    self._compiled_step(group, plan.factor)
        return loss

    def _base_step(self) -> None:
        base_step = super().step.__func__  # type: ignore[misc]
        # torch wraps each class's ``step`` once to run the step hooks; ours already
        # ran them, so call the base update without its wrapper.
        if getattr(base_step, "hooked", False):
            base_step = base_step.__wrapped__
        base_step(self)

    def _plan_decay(self, index: int, group: dict[str, Any]) -> _GroupDecay:
        weight_decay = group["weight_decay"]
        decays = not (isinstance(weight_decay, (int, float)) and weight_decay == 0)
        decoupled = group["decoupled_weight_decay"] and decays
        factor = scale = None
        if decoupled:
            scale = _decay.decay_scale(
                group["weight_decay_scaling"], group["lr"], group.get("initial_lr")
            )
            factor = _decay.decoupled_factor(scale, weight_decay)
            _check_factor(index, group, factor)
        if self._needs_compiled_step(group, decoupled):
            return _GroupDecay(base_view={"params": []}, factor=factor, compiled=True)
        if not decays:
            return _GroupDecay()
        if not decoupled:
            if self._base_decay_is_coupled:
                return _GroupDecay()
            return _GroupDecay(base_view=self._without_base_decay(group), coupled=weight_decay)
        base_view = self._decoupled_in_base(group, weight_decay, scale)
        if base_view is not None:
            return _GroupDecay(base_view=base_view)
        return _GroupDecay(base_view=self._without_base_decay(group), factor=factor)

    def _needs_compiled_step(self, group: dict[str, Any], decoupled: bool) -> bool:
        """Whether this group's update runs as one compiled step (see ``_fused``)."""
        return False

    def _compiled_step(self, group: dict[str, Any], factor: Any) -> None:
        raise NotImplementedError

    def _decoupled_in_base(
        self, group: dict[str, Any], weight_decay: Any, scale: Any
    ) -> dict[str, Any] | None:
        """Group entries that make the base update do decoupled decay itself, or None."""
        return None

    def _without_base_decay(self, group: dict[str, Any]) -> dict[str, Any]:
        return {"weight_decay": 0.0} if "weight_decay" in group else {}

    def _apply_decoupled_decay(self, plans: list[_GroupDecay]) -> None:
        found_inf = getattr(self, "found_inf", None)
        for group, plan in zip(self.param_groups, plans, strict=True):
            if plan.factor is None or plan.compiled:
                continue
            params = _decay.with_grad(group["params"])
            with torch.set_grad_enabled(group.get("differentiable", False)):
                _decay.shrink(
                    params, plan.factor, found_inf=found_inf, foreach=_use_foreach(group, params)
                )

    @contextmanager
    def _grads_with_coupled_decay(self, plans: list[_GroupDecay]) -> Iterator[None]:
        """Show the base update g + λ·p in place of g; the user's gradients stay as they were."""
        grad_scale = getattr(self, "grad_scale", None)
        swapped: list[tuple[Tensor, Tensor]] = []
        try:
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
                        foreach=_use_foreach(group, params),
                    )
                for p, g, new in zip(params, grads, decayed, strict=True):
                    swapped.append((p, g))
                    p.grad = new
            yield
        finally:
            for p, g in swapped:
                p.grad = g


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
    if group["decoupled_weight_decay"] and group["weight_decay_scaling"] == "schedule":
        lr = group["lr"]
        # As an lr scheduler records it; kept if a scheduler got there first.
        group.setdefault("initial_lr", lr.clone() if isinstance(lr, Tensor) else lr)


def _check_factor(index: int, group: dict[str, Any], factor: Any) -> None:
    value = _as_float(factor)
    if value is not None and not value > 0:
        raise ValueError(
            f"decoupled weight decay in param group {index} would flip the sign of every "
            f"weight: 1 - s*weight_decay = {value:.6g} <= 0 with lr={_show(group['lr'])}, "
            f"weight_decay={_show(group['weight_decay'])}, "
            f"weight_decay_scaling={group['weight_decay_scaling']!r}; "
            "s*weight_decay must be < 1 (lower lr or weight_decay). No parameter was changed."
        )


def _show(x: Any) -> str:
    value = _as_float(x)
    return repr(x) if value is None else f"{value:.6g}"


def _use_foreach(group: dict[str, Any], params: list[Tensor]) -> bool:
    """Whether to use multi-tensor kernels, as torch decides for the base update."""
    if group.get("foreach") is not None:
        return bool(group["foreach"])
    if group.get("fused"):
        return True
    _, foreach = _default_to_fused_or_foreach(params, group.get("differentiable", False))
    return foreach


@contextmanager
def _base_view(groups: list[dict[str, Any]], plans: list[_GroupDecay]) -> Iterator[None]:
    """Temporarily replace group entries with what the base update should see."""
    saved = []
    for group, plan in zip(groups, plans, strict=True):
        saved.append({key: group[key] for key in plan.base_view})
        group.update(plan.base_view)
    try:
        yield
    finally:
        for group, original in zip(groups, saved, strict=True):
            group.update(original)


_WEIGHT_DECAY_ARGS = """
    Every argument of the torch.optim class is accepted, with the same default and the
    same checks; these are added:

    Args:
        decoupled_weight_decay (bool, keyword-only): decay the weights directly,
            p ← p·(1 − s_t·λ), instead of adding λ·p to the gradient (default: {default}).
        weight_decay_scaling (str, keyword-only): s_t for decoupled decay: ``"lr"``
            (s_t = lr_t, torch's AdamW convention), ``"schedule"`` (s_t = lr_t / initial_lr,
            Loshchilov & Hutter's η_t) or ``"none"`` (s_t = 1) (default: ``"lr"``).
"""


def _document_weight_decay(cls: type[_Optimizer]) -> type[_Optimizer]:
    """Append the arguments this library adds to a class's docstring."""
    default = "True" if cls.__name__.endswith("W") else "False"
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n" + _WEIGHT_DECAY_ARGS.format(default=default)
    return cls


@_document_weight_decay
class SGD(FusedStepMixin, _WeightDecayMixin, torch.optim.SGD):
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
        self._choose_implementation(foreach, fused)

    def _decoupled_in_base(self, group, weight_decay, scale):
        # p·(1 − s·λ) − lr·g = p − lr·(g + (s·λ/lr)·p): without momentum the two forms
        # are one update, and torch's kernels (fused included) can do it.
        if group["momentum"] != 0:
            return None
        coupled = _lr_scaled(group, weight_decay, scale)
        return None if coupled is None else {"weight_decay": coupled}


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
class Adam(FusedStepMixin, _WeightDecayMixin, torch.optim.Adam):
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
        self._choose_implementation(foreach, fused)

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
class RMSprop(FusedStepMixin, _WeightDecayMixin, torch.optim.RMSprop):
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
        self._choose_implementation(foreach, fused)


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
    }
    cls = type(optimizer_class.__name__, (_WeightDecayMixin, optimizer_class), namespace)
    cls.__qualname__ = f"with_weight_decay({optimizer_class.__qualname__})"
    return cls
