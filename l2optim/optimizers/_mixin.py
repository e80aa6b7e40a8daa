"""The optimizer side of the decay rule: a mixin over any ``torch.optim.Optimizer`` subclass.

The base class does the update; :mod:`._rule` does the decay; :mod:`._planner` decides,
for each param group and each step, where the decay sits (in the base's own kernels, or
applied here around the base update) and what runs the base update. This mixin gathers
what the planner needs, keeps a group's plan while nothing it was made from changes
(:mod:`._memo`: on a small model the planning would otherwise cost a tenth of the step),
and carries out the plan: the decay, the base update with the group entries the plan
shows it, and the one-pass updates ``fused=True`` asks for (the family's own).

Each family (``_sgd``, ``_adam``, ``_rmsprop``) says what its base can do in a
:class:`~._planner.BaseRecord` and supplies its one-pass updates.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
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
from l2optim.optimizers._planner import BaseRecord, GroupStep, StepPlan, plan_group

__all__ = ["WEIGHT_DECAY_ARGS", "LiveFacts", "WeightDecayMixin", "document_weight_decay"]

_Optimizer = TypeVar("_Optimizer", bound=torch.optim.Optimizer)


class LiveFacts:
    """The planner's facts about one group of an optimizer, each read when first asked."""

    def __init__(self, optimizer: WeightDecayMixin, group: dict[str, Any]) -> None:
        self._optimizer, self._group = optimizer, group
        self.compiling = torch.compiler.is_compiling()

    @functools.cached_property
    def tensors(self) -> GroupTensors:
        return self._optimizer._group_tensors(self._group)

    @functools.cached_property
    def state_on_param_device(self) -> bool:
        state = self._optimizer.state
        return all(state.get(p, {}).get("step", p).device == p.device for p in self._group["params"])

    @functools.cached_property
    def triton_kernel_runs(self) -> bool:
        return self._optimizer._runs_triton_kernel(self._group)


class WeightDecayMixin:
    """Both forms of weight decay over a ``torch.optim.Optimizer`` subclass.

    Subclasses call :meth:`_prepare_weight_decay` before ``super().__init__``.
    """

    #: What the base optimizer can do (each family sets its own).
    _base: BaseRecord = BaseRecord()
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
        self,
        weight_decay: Any,
        decoupled_weight_decay: bool,
        weight_decay_scaling: str,
        cautious_weight_decay: bool = False,
    ) -> None:
        # torch rejects a negative λ itself, with its own message; NaN slips through it.
        if isinstance(weight_decay, float) and math.isnan(weight_decay):
            _rule.check_weight_decay("weight_decay", weight_decay)
        _rule.check_weight_decay_scaling(weight_decay_scaling, decoupled_weight_decay)
        _rule.check_cautious("cautious_weight_decay", cautious_weight_decay, decoupled_weight_decay)
        self._weight_decay_defaults = {
            "decoupled_weight_decay": bool(decoupled_weight_decay),
            "weight_decay_scaling": weight_decay_scaling,
            "cautious_weight_decay": bool(cautious_weight_decay),
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
        except (TypeError, ValueError):
            # torch appends the group before we can see its filled-in settings; a
            # refused group must not stay behind in the optimizer.
            self.param_groups.pop()
            raise

    def __setstate__(self, state: dict[str, Any]) -> None:
        # torch's Adam reads a "step" from every non-empty state on loading: a reference
        # saved before the first step is held out of its sight meanwhile.
        params = [p for group in state.get("param_groups", ()) for p in group["params"]]
        hidden = _take_lone_references(state.get("state", {}), params)
        try:
            super().__setstate__(state)  # type: ignore[misc]
        finally:
            for p, reference in hidden:
                self.state[p]["decay_reference"] = reference
        # A checkpoint from the torch.optim class (or an older l2optim) lacks our entries.
        self.defaults.setdefault("decoupled_weight_decay", False)
        self.defaults.setdefault("weight_decay_scaling", "lr")
        self.defaults.setdefault("cautious_weight_decay", False)
        for group in self.param_groups:
            for key in ("decoupled_weight_decay", "weight_decay_scaling", "cautious_weight_decay"):
                group.setdefault(key, self.defaults[key])
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
        if found_inf is not None and self._overflow_read_on_host(step, found_inf):
            return loss
        # Each part runs only where a group has work for it: on a small model every
        # Python call counts.
        if step.toward_reference:
            self._check_references(step, groups)
        swapped = self._show_coupled_decay(step, grad_scale) if step.coupled else ()
        # Cautious decay compares the weights before and after the base update.
        before = self._weights_before(step) if step.cautious else ()
        hidden: list[tuple[Tensor, Tensor]] = []
        try:
            for group, view, _ in step.views:
                group.update(view)
            if step.decoupled:
                self._apply_decoupled_decay(step, found_inf)
            if step.own:
                # A shorter list, not emptied groups: traced, torch's _init_group reads
                # the stored group, whatever the trace wrote into it.
                self.param_groups = [g for i, g in enumerate(groups) if i not in step.own]
            if step.with_references:
                # After the decay has read them: the base update must not see them.
                hidden = self._hide_lone_references(step, groups)
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
            for p, reference in hidden:
                self.state[p]["decay_reference"] = reference
        if step.cautious:
            # After the groups hold their own entries again: λ is the group's, not the view's.
            self._apply_cautious_decay(step, before, found_inf)
        for i in step.own:
            self._own_update(groups[i], step.plans[i].factor)
        return loss

    def _plan_step(self, groups: list[dict[str, Any]]) -> StepPlan:
        """Each group's plan: the one an earlier step made, where nothing it was made from
        has changed (:mod:`l2optim.optimizers._memo`), else a new one."""
        if torch.compiler.is_compiling():
            # Traced once into the graph; a memo would only add guards.
            plans = [self._plan_group(i, group) for i, group in enumerate(groups)]
            return StepPlan.of(plans, groups)
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
            last = self.__dict__["_step_plan"] = StepPlan.of(plans, groups)
        return last

    def _plan_group(self, index: int, group: dict[str, Any]) -> GroupStep:
        plan = plan_group(index, group, self._base, LiveFacts(self, group))
        scaling = group["weight_decay_scaling"]
        if plan.scale is not None and scaling in _rule.SCALINGS_WITH_LR_REF:
            if not torch.compiler.is_compiling():
                # s = lr/lr_ref under "schedule"; s/lr is that ratio under "corrected".
                ratio = plan.scale if scaling == "schedule" else _lr_ratio(group)
                self._warn_if_lr_above_reference(index, group, ratio)
        return plan

    def _warn_if_lr_above_reference(self, index: int, group: dict[str, Any], ratio: Any) -> None:
        warned = self.__dict__.setdefault("_warned_lr_above_reference", set())
        if id(group) in warned:
            return
        message = _rule.lr_above_reference(index, group, ratio)
        if message is not None:
            warned.add(id(group))
            _compat.warn_in_user_code(message, _rule.LrAboveReferenceWarning)

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

    def _overflow_read_on_host(self, step: StepPlan, found_inf: Tensor) -> bool:
        """Whether the whole step is skipped here, GradScaler's flag read on the host.

        Only where the base needs it for a group (see ``BaseRecord.overflow_read_on_host``):
        one synchronisation on such steps, as GradScaler makes for unfused optimizers.
        """
        if not any(
            not plan.own_update and self._base.overflow_read_on_host(group, plan.base_view, self.state)
            for group, plan in zip(self.param_groups, step.plans, strict=True)
        ):
            return False
        return bool(found_inf.item())

    def _runs_triton_kernel(self, group: dict[str, Any]) -> bool:
        return (
            bool(group.get("fused"))
            and self._base.triton_kernel
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

    def _apply_decoupled_decay(self, step: StepPlan, found_inf: Tensor | None) -> None:
        for i in step.decoupled:
            plan = step.plans[i]
            params = _rule.with_grad(self.param_groups[i]["params"])
            _rule.shrink(
                params,
                plan.factor,
                found_inf=found_inf,
                foreach=plan.decay_foreach,
                references=self._references(i, params) if plan.toward_reference else None,
            )

    # -- decay towards a reference ------------------------------------------------------

    def decay_towards(self, references: Any = None) -> None:
        """Decay towards reference weights instead of zero, from the next step on.

        Both forms then pull towards r: coupled g ← g + λ·(p − r), decoupled
        p ← r + (p − r)·(1 − s_t·λ) (L2-SP, Li et al. 2018, when r are the pretrained
        weights). The references are kept in the optimizer's state, as
        ``state[p]["decay_reference"]``, so checkpoints carry them; every group they
        cover gets ``decay_to_reference=True``.

        Args:
            references: None for the parameters' values now (call it after loading the
                pretrained weights); a dict from parameters to tensors; or a list of
                tensors, one per parameter, in the order of the param groups. Every
                parameter of a group needs one (a group λ = 0 may be left out).

        Raises:
            ValueError: a reference of another shape, a parameter that is not the
                optimizer's, or a decayed group only partly covered; nothing is changed.
        """
        params = [p for group in self.param_groups for p in group["params"]]
        found = _reference_map(params, references)
        chosen = []
        for i, group in enumerate(self.param_groups):
            covered = sum(id(p) in found for p in group["params"])
            if covered == 0:
                continue
            if covered < len(group["params"]):
                raise ValueError(
                    f"references cover {covered} of the {len(group['params'])} parameters "
                    f"of param group {i}: give one for each, or none. Nothing was changed."
                )
            chosen.append(group)
        with torch.no_grad():
            for p in params:
                if id(p) in found:
                    self.state[p]["decay_reference"] = found[id(p)].detach().to(p, copy=True)
        for group in chosen:
            group["decay_to_reference"] = True

    def _references(self, index: int, params: list[Tensor]) -> list[Tensor]:
        return [self.state[p]["decay_reference"] for p in params]

    def _check_references(self, step: StepPlan, groups: list[dict[str, Any]]) -> None:
        """Every parameter that decays towards a reference has one: checked before any
        parameter changes."""
        for i in step.toward_reference:
            for p in _rule.with_grad(groups[i]["params"]):
                if "decay_reference" not in self.state.get(p, ()):
                    raise ValueError(
                        f"param group {i} decays towards references (decay_to_reference=True) "
                        "but a parameter of it has none: call decay_towards() for it. No "
                        "parameter was changed."
                    )

    def _hide_lone_references(
        self, step: StepPlan, groups: list[dict[str, Any]]
    ) -> list[tuple[Tensor, Tensor]]:
        """Take out references that are a parameter's only state, until the base update
        has made its own: torch's Adam and RMSprop start their state when it is empty."""
        params = [p for i in step.with_references for p in groups[i]["params"]]
        hidden = _take_lone_references(self.state, params)
        if hidden and torch.compiler.is_compiling():
            # Traced, the base update would read the state as it was before the trace:
            # a break applies the change first.
            torch._dynamo.graph_break()
        return hidden

    # The decay rules applied here run in the step's grad mode (torch's, from
    # ``differentiable``): with differentiable=True they are part of the graph.

    def _weights_before(self, step: StepPlan) -> list[list[Tensor]]:
        return [
            [p.clone() for p in _rule.with_grad(self.param_groups[i]["params"])]
            for i in step.cautious
        ]

    def _apply_cautious_decay(
        self, step: StepPlan, before: list[list[Tensor]], found_inf: Tensor | None
    ) -> None:
        for i, weights in zip(step.cautious, before, strict=True):
            group, plan = self.param_groups[i], step.plans[i]
            params = _rule.with_grad(group["params"])
            amount = plan.scale * group["weight_decay"]
            _rule.cautious_shrink(params, weights, amount, found_inf=found_inf)

    def _show_coupled_decay(
        self, step: StepPlan, grad_scale: Tensor | None
    ) -> list[tuple[Tensor, Tensor]]:
        """Show the base update g + λ·p in place of g; returns what to put back after."""
        swapped: list[tuple[Tensor, Tensor]] = []
        for i in step.coupled:
            group, plan = self.param_groups[i], step.plans[i]
            params = _rule.with_grad(group["params"])
            grads = [p.grad for p in params]
            decayed = _rule.add_coupled_decay(
                grads,
                params,
                plan.coupled,
                maximize=group.get("maximize", False),
                grad_scale=grad_scale,
                foreach=plan.decay_foreach,
                references=self._references(i, params) if plan.toward_reference else None,
            )
            for p, g, new in zip(params, grads, decayed, strict=True):
                swapped.append((p, g))
                p.grad = new
        return swapped


def _copy_lr(lr: Any) -> Any:
    # Schedulers write a tensor lr in place: a reference must not follow it.
    return lr.clone() if isinstance(lr, Tensor) else lr


def _check_group(index: int, group: dict[str, Any]) -> None:
    _rule.check_weight_decay(f"weight_decay in param group {index}", group["weight_decay"])
    _rule.check_weight_decay_scaling(
        group["weight_decay_scaling"], group["decoupled_weight_decay"]
    )
    group.setdefault("lr_ref", _copy_lr(group["lr"]))
    group.setdefault("cautious_weight_decay", False)
    _rule.check_cautious(
        f"cautious_weight_decay in param group {index}",
        group["cautious_weight_decay"],
        group["decoupled_weight_decay"],
    )
    if group["decoupled_weight_decay"] and group["weight_decay_scaling"] in (
        _rule.SCALINGS_WITH_LR_REF
    ):
        _rule.check_lr_ref(f"lr_ref in param group {index}", group["lr_ref"])


def _take_lone_references(state: Any, params: list[Any]) -> list[tuple[Any, Tensor]]:
    """Pop ``decay_reference`` where it is a parameter's only state; what was popped."""
    taken = []
    for p in params:
        entry = state.get(p)
        if entry is not None and len(entry) == 1 and "decay_reference" in entry:
            taken.append((p, entry.pop("decay_reference")))
    return taken


def _reference_map(params: list[Tensor], references: Any) -> dict[int, Tensor]:
    """``decay_towards``'s references by parameter id, each checked against its parameter."""
    if references is None:
        return {id(p): p.detach() for p in params}
    if isinstance(references, dict):
        known = {id(p): p for p in params}
        strangers = [i for i, p in enumerate(references) if id(p) not in known]
        if strangers:
            raise ValueError(
                f"references: key {strangers[0]} is not a parameter of this optimizer; "
                "nothing was changed"
            )
        pairs = [(known[id(p)], r) for p, r in references.items()]
    else:
        references = list(references)
        if len(references) != len(params):
            raise ValueError(
                f"references: {len(references)} tensors for the optimizer's {len(params)} "
                "parameters (one each, in the order of the param groups); nothing was changed"
            )
        pairs = list(zip(params, references, strict=True))
    for i, (p, r) in enumerate(pairs):
        if not isinstance(r, Tensor) or r.shape != p.shape:
            shape = tuple(r.shape) if isinstance(r, Tensor) else type(r).__name__
            raise ValueError(
                f"references: entry {i} has shape {shape}, its parameter {tuple(p.shape)}; "
                "nothing was changed"
            )
    return {id(p): r for p, r in pairs}


def _lr_ratio(group: dict[str, Any]) -> Any:
    """lr/lr_ref, or None when a tensor on an accelerator would need a synchronisation."""
    lr, lr_ref = group["lr"], group["lr_ref"]
    on_device = [x for x in (lr, lr_ref) if isinstance(x, Tensor) and x.device.type != "cpu"]
    return None if on_device else float(lr) / float(lr_ref)


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
            another), ``"corrected"`` (s_t = lr_t² / lr_ref, Defazio's corrected decay,
            lr_ref being the schedule's peak) or ``"none"`` (s_t = 1) (default: ``"lr"``).
        cautious_weight_decay (bool, keyword-only): decoupled decay only where the base
            update moves a weight towards zero, p' ← p' − s_t·λ·p·𝟙[(p − p')·p ≥ 0]
            with p' the weights after the base update (Chen et al. 2025); it keeps one
            copy of the group's weights during the step (default: False).
"""


def document_weight_decay(cls: type[_Optimizer]) -> type[_Optimizer]:
    """Append the arguments this library adds to a class's docstring."""
    default = "True" if cls.__name__.endswith("W") else "False"
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n" + WEIGHT_DECAY_ARGS.format(default=default)
    return cls
