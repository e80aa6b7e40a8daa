"""Where the decay rule sits in a step, for any ``torch.optim.Optimizer`` subclass.

The base class does the update; :mod:`l2optim.optimizers._rule` does the decay; the mixin here
decides, for each param group and each step, where the decay sits:

* coupled, when the base's own ``weight_decay`` is coupled L2: the base does it,
  with its own kernels (single-tensor, foreach or fused), so the numbers are torch's;
* decoupled, when the base has a kernel for the same maths (Adam's decoupled mode;
  SGD without momentum, where decoupled decay *is* coupled decay with λ·s_t/lr_t):
  λ is translated into the base's convention for that step;
* otherwise the mixin applies the rule itself, on the parameters that have a
  gradient, just before the base update, and shows the base a ``weight_decay`` of 0.

It also chooses what runs the base update when the user chose nothing
(:mod:`l2optim.optimizers._implementation`), and runs a whole update itself where ``fused=True`` asks
for a one-pass step torch does not have. A group's plan is kept for the next step while
nothing it was made from changes (:mod:`l2optim.optimizers._memo`): on a small model the
planning would otherwise cost a tenth of the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor

from l2optim import _compat
from l2optim.optimizers import _compiled, _rule
from l2optim.optimizers._implementation import (
    GroupTensors,
    fused_kernel_supports,
    triton_kernel_runs,
)
from l2optim.optimizers._memo import GroupMemo, same_objects

__all__ = ["WEIGHT_DECAY_ARGS", "WeightDecayMixin", "document_weight_decay", "lr_scaled"]

_Optimizer = TypeVar("_Optimizer", bound=torch.optim.Optimizer)


def _as_float(x: Any) -> float | None:
    """``x`` as a Python float when that costs no device synchronisation, else None."""
    if isinstance(x, Tensor):
        return float(x) if x.device.type == "cpu" else None
    return float(x)


@dataclass(frozen=True, slots=True)
class _GroupStep:
    """What one step does in one param group (kept for later steps: see ``_plan_step``)."""

    # Group entries the base update sees in place of the stored ones, this step only.
    base_view: dict[str, Any] = field(default_factory=dict)
    # λ for coupled decay applied here (the base cannot), else None.
    coupled: float | Tensor | None = None
    # 1 − s_t·λ for decoupled decay applied here (the base cannot), else None.
    factor: float | Tensor | None = None
    # The whole update runs here, in one pass (compiled, or a kernel), not in the base.
    own_update: bool = False
    # The decay applied here runs on foreach kernels (see ``_use_foreach``).
    decay_foreach: bool = True
    # The plan depends on the value of the group's lr, not only on its being a number.
    reads_lr: bool = True


@dataclass(frozen=True, slots=True)
class _StepPlan:
    """Every group's plan for a step, and the groups that have work in each part of it."""

    plans: tuple[_GroupStep, ...]
    # Indices of the groups whose base update sees g + λ·p (coupled decay applied here),
    coupled: tuple[int, ...]
    # that are decayed here before the base update,
    decoupled: tuple[int, ...]
    # and whose whole update runs here; the base update sees the other groups only.
    own: tuple[int, ...]
    # (group, entries the base update sees, the group's own entries to put back after),
    # leaving out entries that already hold the object the base should see. The entries
    # to put back are those the group held when the plans were made: the plans are used
    # only while it holds the same objects (see ``_plan_step``).
    views: tuple[tuple[dict[str, Any], dict[str, Any], dict[str, Any]], ...]

    @classmethod
    def of(cls, plans: list[_GroupStep], groups: list[dict[str, Any]]) -> _StepPlan:
        def where(has: Callable[[_GroupStep], Any]) -> tuple[int, ...]:
            return tuple(i for i, plan in enumerate(plans) if has(plan))

        return cls(
            plans=tuple(plans),
            coupled=where(lambda plan: plan.coupled is not None),
            decoupled=where(lambda plan: plan.factor is not None and not plan.own_update),
            own=where(lambda plan: plan.own_update),
            views=tuple(
                (group, view, {key: group[key] for key in view})
                for group, plan in zip(groups, plans, strict=True)
                if (view := _changed_entries(group, plan.base_view))
            ),
        )


def _changed_entries(group: dict[str, Any], view: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``view`` that ``group`` does not already hold (the same object)."""
    return {key: value for key, value in view.items() if key not in group or group[key] is not value}


class WeightDecayMixin:
    """Both forms of weight decay over a ``torch.optim.Optimizer`` subclass.

    Subclasses call :meth:`_prepare_weight_decay` before ``super().__init__``.
    """

    #: True when the base class's ``weight_decay`` is coupled L2 (all of torch.optim's are).
    _base_decay_is_coupled = False
    #: True when torch has a fused kernel for the base (SGD, Adam): a default may use it.
    _base_has_fused_kernel = False
    #: The base class's update, without the wrappers of torch's steps (set per subclass).
    _base_update: Callable[..., Any]

    param_groups: list[dict[str, Any]]
    defaults: dict[str, Any]
    state: dict[Tensor, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        mro = cls.__mro__
        base = mro[mro.index(WeightDecayMixin) + 1]
        cls._base_update = _compat.step_body(base)

    # -- construction -------------------------------------------------------------

    def _prepare_weight_decay(
        self, weight_decay: Any, decoupled_weight_decay: bool, weight_decay_scaling: str
    ) -> None:
        # torch rejects a negative λ itself, with its own message; NaN slips through it.
        if isinstance(weight_decay, float) and math.isnan(weight_decay):
            _rule.check_weight_decay(weight_decay)
        _rule.check_weight_decay_scaling(weight_decay_scaling, decoupled_weight_decay)
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

    @_compat.hooked_step
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
        groups = self.param_groups
        capturable = _compat.capturable_entries(self)
        # Every group is checked before any parameter changes.
        step = self._plan_step(groups)
        grad_scale, found_inf = _compat.gradscaler_handoff(self)
        if found_inf is not None and self._skips_for_overflow(step.plans, found_inf):
            return loss
        # Each part runs only where a group has work for it: on a small model every
        # Python call counts.
        swapped = self._show_coupled_decay(step, grad_scale) if step.coupled else ()
        try:
            for group, view, _ in step.views:
                group.update(view)
            if step.decoupled:
                self._apply_decoupled_decay(step, found_inf)
            if step.own:
                # A shorter list, not emptied groups: traced, torch's _init_group reads
                # the stored group, whatever the trace wrote into it.
                self.param_groups = [g for i, g in enumerate(groups) if i not in step.own]
            self._base_update()
        finally:
            if step.own:
                self.param_groups = groups
            for group, _, stored in step.views:
                group.update(stored)
            if capturable is not None and step.views:
                _compat.restore_capturable(groups, capturable, [g for g, _, _ in step.views])
            for p, grad in swapped:
                p.grad = grad
        for i in step.own:
            self._own_update(groups[i], step.plans[i].factor)
        return loss

    def _plan_step(self, groups: list[dict[str, Any]]) -> _StepPlan:
        """Each group's plan: the one an earlier step made, where nothing it was made from
        has changed (:mod:`l2optim.optimizers._memo`), else a new one."""
        if torch.compiler.is_compiling():
            # Traced once into the graph; a memo would only add guards.
            plans = [self._plan_group(i, group) for i, group in enumerate(groups)]
            return _StepPlan.of(plans, groups)
        memos: list[GroupMemo | None] = self.__dict__.setdefault("_plan_memos", [])
        del memos[len(groups) :]
        plans = []
        for i, group in enumerate(groups):
            memo = memos[i] if i < len(memos) else None
            if memo is not None and memo.fits(group, self.state):
                plans.append(memo.value)
                continue
            plan = self._plan_group(i, group)
            # fused=True may run l2optim's kernels, switched by the environment: not kept.
            memo = None
            if not group.get("fused"):
                reads_lr = plan.reads_lr or "lr" in plan.base_view
                memo = GroupMemo.of(group, self.state, plan, None if reads_lr else "lr")
            if i < len(memos):
                memos[i] = memo
            else:
                memos.append(memo)
            plans.append(plan)
        last = self.__dict__.get("_step_plan")
        if last is None or not same_objects(plans, last.plans):
            last = self.__dict__["_step_plan"] = _StepPlan.of(plans, groups)
        return last

    def _plan_group(self, index: int, group: dict[str, Any]) -> _GroupStep:
        weight_decay = group["weight_decay"]
        decays = not (isinstance(weight_decay, (int, float)) and weight_decay == 0)
        decoupled = group["decoupled_weight_decay"] and decays
        factor = scale = None
        if decoupled:
            scale = _decay_scale(index, group)
            if group["weight_decay_scaling"] == "schedule" and not torch.compiler.is_compiling():
                self._warn_if_lr_above_reference(index, group, scale)
            factor = _rule.decoupled_factor(scale, weight_decay)
            _check_factor(index, group, factor, scale)
        if self._needs_own_update(group, decoupled):
            return _GroupStep(factor=factor, own_update=True, reads_lr=decoupled)
        implementation = self._default_implementation(group)
        if not decays:
            return _GroupStep(base_view=implementation, reads_lr=False)
        if not decoupled:
            if self._base_decay_is_coupled:
                return _GroupStep(base_view=implementation, reads_lr=False)
            return _GroupStep(
                base_view={**implementation, **self._without_base_decay(group)},
                coupled=weight_decay,
                decay_foreach=self._use_foreach(group),
                reads_lr=False,
            )
        in_base = self._decoupled_in_base(group, weight_decay, scale)
        if in_base is not None:
            return _GroupStep(base_view={**implementation, **in_base})
        return _GroupStep(
            base_view={**implementation, **self._without_base_decay(group)},
            factor=factor,
            decay_foreach=self._use_foreach(group),
        )

    def _warn_if_lr_above_reference(self, index: int, group: dict[str, Any], scale: Any) -> None:
        warned = self.__dict__.setdefault("_warned_lr_above_reference", set())
        if id(group) in warned:
            return
        message = _rule.lr_above_reference(index, group, scale)
        if message is not None:
            warned.add(id(group))
            _compat.warn_in_user_code(message, _rule.LrAboveReferenceWarning)

    def _default_implementation(self, group: dict[str, Any]) -> dict[str, Any]:
        """What the base update runs when the user chose no implementation for the group.

        torch's fused kernel where it is faster; else, for small CPU tensors, the
        base's foreach update where it is the same arithmetic as its per-tensor loop
        (fewer Python calls); else torch's own default (see :mod:`l2optim.optimizers._implementation`).
        """
        if (
            group.get("foreach") is not None
            or group.get("fused") is not None
            or group.get("differentiable")
            # Traced, torch's default runs the update per tensor, whose ops take a
            # scheduled lr as a symbol; its multi-tensor ops would take it as a constant
            # and recompile at every new value.
            or torch.compiler.is_compiling()
        ):
            return {}
        tensors = self._group_tensors(group)
        if self._base_has_fused_kernel and self._prefers_fused_kernel(group, tensors):
            return {"fused": True}
        if tensors.foreach_by_default and self._foreach_matches_loop(group):
            return {"foreach": True}
        return {}

    def _foreach_matches_loop(self, group: dict[str, Any]) -> bool:
        """Whether the base's foreach update does what its per-tensor loop does, operation
        for operation and with the same side effects (in float32 and float64): a default
        may then use it."""
        return False

    def _prefers_fused_kernel(self, group: dict[str, Any], tensors: GroupTensors) -> bool:
        return tensors.fused_by_default

    def _group_tensors(self, group: dict[str, Any]) -> GroupTensors:
        """What the group's tensors allow, cached while its list holds the same tensors.

        The cache is not part of the optimizer's state: a copy works it out again, and
        gets the same answer from the same parameters.
        """
        params = group["params"]
        if torch.compiler.is_compiling():
            return GroupTensors.of(params)  # traced once; a cache would only add guards
        cache = self.__dict__.setdefault("_group_tensors_cache", {})
        hit = cache.get(id(params))
        if hit is None or not same_objects(params, hit[0]):
            # Only the lists the groups hold now are kept: the cache holds their tensors.
            live = {id(g["params"]) for g in self.param_groups}
            for key in [key for key in cache if key not in live]:
                del cache[key]
            hit = cache[id(params)] = (tuple(params), GroupTensors.of(params))
        return hit[1]

    def _skips_for_overflow(self, plans: list[_GroupStep], found_inf: Tensor) -> bool:
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
            and type(self)._kernel_update is not WeightDecayMixin._kernel_update
            and triton_kernel_runs(group["params"])
        )

    def _own_update(self, group: dict[str, Any], factor: Any) -> None:
        if self._runs_triton_kernel(group):
            params = _rule.with_grad(group["params"])
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
        params = _rule.with_grad(group["params"])
        if not params:
            return None
        if not fused_kernel_supports(params):
            raise RuntimeError(
                "`fused=True` requires all the params to be dense floating point Tensors of "
                f"supported devices: {_compat.fused_kernel_devices()}"
            )
        lr = _compiled.scalar_tensor(group["lr"], params)
        factor = None if factor is None else _compiled.scalar_tensor(factor, params)
        return params, lr, factor, grad_scale

    def _use_foreach(self, group: dict[str, Any]) -> bool:
        """Whether the decay itself runs on multi-tensor kernels.

        The decay is one multiply or one add per tensor, the same arithmetic either way,
        so it runs on foreach kernels wherever they apply (torch's CPU default would loop
        in Python), unless the user chose for the group.
        """
        if group.get("foreach") is not None:
            return bool(group["foreach"])
        if torch.compiler.is_compiling():
            return False  # as in _default_implementation: a scheduled lr would recompile
        return not group.get("differentiable", False) and self._group_tensors(group).plain

    def _decoupled_in_base(
        self, group: dict[str, Any], weight_decay: Any, scale: Any
    ) -> dict[str, Any] | None:
        """Group entries that make the base update do decoupled decay itself, or None."""
        return None

    def _without_base_decay(self, group: dict[str, Any]) -> dict[str, Any]:
        return {"weight_decay": 0.0} if "weight_decay" in group else {}

    def _apply_decoupled_decay(self, step: _StepPlan, found_inf: Tensor | None) -> None:
        for i in step.decoupled:
            plan = step.plans[i]
            params = _rule.with_grad(self.param_groups[i]["params"])
            _rule.shrink(params, plan.factor, found_inf=found_inf, foreach=plan.decay_foreach)

    def _show_coupled_decay(
        self, step: _StepPlan, grad_scale: Tensor | None
    ) -> list[tuple[Tensor, Tensor]]:
        """Show the base update g + λ·p in place of g; returns what to put back after."""
        swapped: list[tuple[Tensor, Tensor]] = []
        for i in step.coupled:
            group, plan = self.param_groups[i], step.plans[i]
            params = _rule.with_grad(group["params"])
            grads = [p.grad for p in params]
            with torch.no_grad():
                decayed = _rule.add_coupled_decay(
                    grads,
                    params,
                    plan.coupled,
                    maximize=group.get("maximize", False),
                    grad_scale=grad_scale,
                    foreach=plan.decay_foreach,
                )
            for p, g, new in zip(params, grads, decayed, strict=True):
                swapped.append((p, g))
                p.grad = new
        return swapped


def _copy_lr(lr: Any) -> Any:
    # Schedulers write a tensor lr in place: a reference must not follow it.
    return lr.clone() if isinstance(lr, Tensor) else lr


def lr_scaled(group: dict[str, Any], weight_decay: Any, scale: Any) -> float | None:
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
    _rule.check_weight_decay(group["weight_decay"], f"weight_decay in param group {index}")
    _rule.check_weight_decay_scaling(
        group["weight_decay_scaling"], group["decoupled_weight_decay"]
    )
    group.setdefault("lr_ref", _copy_lr(group["lr"]))
    if group["decoupled_weight_decay"] and group["weight_decay_scaling"] == "schedule":
        _rule.check_lr_ref(group["lr_ref"], f"lr_ref in param group {index}")


def _decay_scale(index: int, group: dict[str, Any]) -> Any:
    scaling = group["weight_decay_scaling"]
    if scaling == "schedule":
        _rule.check_lr_ref(group.get("lr_ref"), f"lr_ref in param group {index}")
    return _rule.decay_scale(scaling, group["lr"], group.get("lr_ref"))


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


WEIGHT_DECAY_ARGS = """
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


def document_weight_decay(cls: type[_Optimizer]) -> type[_Optimizer]:
    """Append the arguments this library adds to a class's docstring."""
    default = "True" if cls.__name__.endswith("W") else "False"
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n" + WEIGHT_DECAY_ARGS.format(default=default)
    return cls
