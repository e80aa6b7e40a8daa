"""The step planner: where the decay rule sits in one param group's step.

A pure function of the group's entries, a record of what the base optimizer can do, and
a few facts about the group's tensors; it knows nothing of optimizer objects, so it is
tested with plain dicts. For each group it decides:

* coupled decay, when the base's own ``weight_decay`` is coupled L2: the base does it,
  with its own kernels (single-tensor, foreach or fused), so the numbers are torch's;
* decoupled decay, where the base has a kernel for the same maths (Adam's decoupled mode;
  SGD without momentum, where decoupled decay *is* coupled decay with λ·s_t/lr_t): λ in
  the base's convention for that step;
* otherwise the rule applied by the optimizer on the parameters that have a gradient,
  just before the base update, with the base shown a ``weight_decay`` of 0;
* what runs the base update when the user chose nothing (:mod:`._implementation`), and
  whether ``fused=True`` asks for a one-pass update torch does not have (compiled, or
  l2optim's Triton kernel).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from torch import Tensor

from l2optim.optimizers import _rule
from l2optim.optimizers._implementation import GroupTensors

__all__ = [
    "BaseRecord",
    "GroupFacts",
    "GroupStep",
    "StepPlan",
    "lr_scaled",
    "plan_group",
]

Group = Mapping[str, Any]


def _never(*_: Any) -> bool:
    return False


@dataclass(frozen=True)
class BaseRecord:
    """What one base optimizer can do, as far as the planner needs to know.

    Attributes:
        decay_is_coupled: its ``weight_decay`` is coupled L2 (all of torch.optim's is); a
            base whose ``weight_decay`` means something else is shown 0, and l2optim
            applies both forms itself.
        fused_kernel: torch has a fused kernel for it, which a default may choose.
        fused_kernel_needs_state_on_device: the fused kernel cannot read state that the
            unfused path keeps on the CPU (Adam's step counts).
        triton_kernel: l2optim has a Triton kernel for it (``fused=True`` with
            ``L2OPTIM_TRITON_KERNELS=1``).
        foreach_matches_loop: ``(group) →`` whether its foreach update does what its
            per-tensor loop does, operation for operation, in float32 and float64: a
            default may then choose it.
        decoupled_in_base: ``(group) →`` whether its own kernels do decoupled decay for
            this group when shown λ·s/lr as ``weight_decay``.
        compiled_when_fused: ``(group, decoupled) →`` whether ``fused=True`` runs
            l2optim's compiled one-pass update, torch having no fused kernel for it.
        overflow_read_on_host: ``(group, view, state) →`` whether a step that GradScaler
            hands over must read its overflow flag on the host and skip itself (torch's
            fused SGD creates momentum buffers before it looks at the flag).
    """

    decay_is_coupled: bool = False
    fused_kernel: bool = False
    fused_kernel_needs_state_on_device: bool = False
    triton_kernel: bool = False
    foreach_matches_loop: Callable[[Group], bool] = _never
    decoupled_in_base: Callable[[Group], bool] = _never
    compiled_when_fused: Callable[[Group, bool], bool] = _never
    overflow_read_on_host: Callable[[Group, Group, Mapping[Tensor, Any]], bool] = _never


class GroupFacts(Protocol):
    """What the planner needs to know of a group besides its entries (read lazily)."""

    #: What the group's tensors allow (:class:`GroupTensors`).
    tensors: GroupTensors
    #: No state yet, or its step counts are on the parameters' device.
    state_on_param_device: bool
    #: ``fused=True`` may run l2optim's Triton kernel for these tensors.
    triton_kernel_runs: bool
    #: The step is being traced by torch.compile.
    compiling: bool


@dataclass(frozen=True, slots=True)
class GroupStep:
    """What one step does in one param group."""

    # Group entries the base update sees in place of the stored ones, this step only.
    base_view: dict[str, Any] = field(default_factory=dict)
    # λ for coupled decay applied by the optimizer (the base cannot), else None.
    coupled: float | Tensor | None = None
    # 1 − s_t·λ for decoupled decay applied by the optimizer, else None.
    factor: float | Tensor | None = None
    # s_t of decoupled decay, else None.
    scale: float | Tensor | None = None
    # The whole update runs in one pass (compiled, or a kernel), not in the base.
    own_update: bool = False
    # The decay applied by the optimizer runs on foreach kernels.
    decay_foreach: bool = True
    # The plan depends on the value of the group's lr, not only on its being a number.
    reads_lr: bool = True
    # Decoupled decay applied after the base update, where it agrees with its sign.
    cautious: bool = False
    # The decay pulls towards the group's references, not towards zero.
    toward_reference: bool = False


def plan_group(index: int, group: Group, base: BaseRecord, facts: GroupFacts) -> GroupStep:
    """The plan of param group ``index`` for one step.

    Raises:
        ValueError: a decoupled decay that would flip the sign of every weight
            (1 − s·λ ≤ 0), or a ``"schedule"`` or ``"corrected"`` group without a
            usable ``lr_ref``.
    """
    weight_decay = group["weight_decay"]
    decays = not (isinstance(weight_decay, (int, float)) and weight_decay == 0)
    decoupled = bool(group["decoupled_weight_decay"]) and decays
    factor = scale = None
    if decoupled:
        scaling = group["weight_decay_scaling"]
        if scaling in _rule.SCALINGS_WITH_LR_REF:
            _rule.check_lr_ref(f"lr_ref in param group {index}", group.get("lr_ref"))
        scale = _rule.decay_scale(scaling, group["lr"], group.get("lr_ref"))
        factor = _rule.decoupled_factor(scale, weight_decay)
        _check_factor(index, group, factor, scale)
    cautious = decoupled and bool(group.get("cautious_weight_decay"))
    toward = decays and bool(group.get("decay_to_reference"))
    if cautious and toward:
        raise ValueError(
            f"param group {index}: cautious_weight_decay=True with decay towards a "
            "reference is not implemented. No parameter was changed."
        )
    if group.get("fused") and (
        facts.triton_kernel_runs or base.compiled_when_fused(group, decoupled)
    ):
        if cautious or toward:
            what = "cautious_weight_decay=True" if cautious else "decay towards a reference"
            raise ValueError(
                f"param group {index}: {what} with fused=True: this update runs in one "
                "pass that has no such decay. Use foreach=True (or the default) for this "
                "group. No parameter was changed."
            )
        return GroupStep(factor=factor, scale=scale, own_update=True, reads_lr=decoupled)
    implementation = default_implementation(group, base, facts)
    if not decays:
        return GroupStep(base_view=implementation, reads_lr=False)
    if not decoupled:
        if base.decay_is_coupled and not toward:
            return GroupStep(base_view=implementation, reads_lr=False)
        return GroupStep(
            base_view={**implementation, **_without_base_decay(group)},
            coupled=weight_decay,
            decay_foreach=_decay_on_foreach(group, facts),
            reads_lr=False,
            toward_reference=toward,
        )
    if cautious:
        return GroupStep(
            base_view={**implementation, **_without_base_decay(group)},
            factor=factor,
            scale=scale,
            cautious=True,
        )
    in_base = (
        lr_scaled(group, weight_decay, scale)
        if base.decoupled_in_base(group) and not toward
        else None
    )
    if in_base is not None:
        return GroupStep(base_view={**implementation, "weight_decay": in_base}, scale=scale)
    return GroupStep(
        base_view={**implementation, **_without_base_decay(group)},
        factor=factor,
        scale=scale,
        decay_foreach=_decay_on_foreach(group, facts),
        toward_reference=toward,
    )


def default_implementation(group: Group, base: BaseRecord, facts: GroupFacts) -> dict[str, Any]:
    """What the base update runs when the user chose no implementation for the group.

    torch's fused kernel where it is faster; else, for small CPU tensors, the base's
    foreach update where it is the same arithmetic as its per-tensor loop (fewer Python
    calls); else torch's own default (see :mod:`l2optim.optimizers._implementation`).
    """
    if (
        group.get("foreach") is not None
        or group.get("fused") is not None
        or group.get("differentiable")
        # Traced, torch's default runs the update per tensor, whose ops take a scheduled
        # lr as a symbol; its multi-tensor ops would take it as a constant and
        # recompile at every new value.
        or facts.compiling
    ):
        return {}
    tensors = facts.tensors
    if (
        base.fused_kernel
        and tensors.fused_by_default
        and (not base.fused_kernel_needs_state_on_device or facts.state_on_param_device)
    ):
        return {"fused": True}
    if tensors.foreach_by_default and base.foreach_matches_loop(group):
        return {"foreach": True}
    return {}


def _decay_on_foreach(group: Group, facts: GroupFacts) -> bool:
    """Whether the decay applied by the optimizer runs on multi-tensor kernels.

    The decay is one multiply or one add per tensor, the same arithmetic either way, so
    it runs on foreach kernels wherever they apply (torch's CPU default would loop in
    Python), unless the user chose for the group; traced, as torch's traced default does.
    """
    if group.get("foreach") is not None:
        return bool(group["foreach"])
    if facts.compiling:
        return False  # as in default_implementation: a scheduled lr would recompile
    return not group.get("differentiable", False) and facts.tensors.plain


def _without_base_decay(group: Group) -> dict[str, Any]:
    return {"weight_decay": 0.0} if "weight_decay" in group else {}


@dataclass(frozen=True)
class StepPlan:
    """Every group's plan for a step, and the groups that have work in each part of it."""

    plans: tuple[GroupStep, ...]
    # Indices of the groups whose base update sees g + λ·p (coupled decay applied here),
    coupled: tuple[int, ...]
    # that are decayed here before the base update,
    decoupled: tuple[int, ...]
    # or cautiously, after it,
    cautious: tuple[int, ...]
    # (those that decay towards references),
    toward_reference: tuple[int, ...]
    # and that hold references, whatever their λ today (a schedule may make it 0).
    with_references: tuple[int, ...]
    # and whose whole update runs here; the base update sees the other groups only.
    own: tuple[int, ...]
    # (group, entries the base update sees, the group's own entries to put back after),
    # leaving out entries that already hold the object the base should see. The entries
    # to put back are those the group held when the plans were made: the plans are used
    # only while it holds the same objects (see the mixin's ``_plan_step``).
    views: tuple[tuple[dict[str, Any], dict[str, Any], dict[str, Any]], ...]

    @classmethod
    def of(cls, plans: Sequence[GroupStep], groups: Sequence[dict[str, Any]]) -> StepPlan:
        def where(has: Callable[[GroupStep], Any]) -> tuple[int, ...]:
            return tuple(i for i, plan in enumerate(plans) if has(plan))

        return cls(
            plans=tuple(plans),
            coupled=where(lambda plan: plan.coupled is not None),
            decoupled=where(
                lambda plan: plan.factor is not None and not (plan.own_update or plan.cautious)
            ),
            cautious=where(lambda plan: plan.cautious),
            toward_reference=where(lambda plan: plan.toward_reference),
            with_references=tuple(
                i for i, group in enumerate(groups) if group.get("decay_to_reference")
            ),
            own=where(lambda plan: plan.own_update),
            views=tuple(
                (group, view, {key: group[key] for key in view})
                for group, plan in zip(groups, plans, strict=True)
                if (view := _changed_entries(group, plan.base_view))
            ),
        )


def _changed_entries(group: Group, view: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``view`` that ``group`` does not already hold (the same object)."""
    return {k: v for k, v in view.items() if k not in group or group[k] is not v}


# -- numbers --------------------------------------------------------------------------------


def as_float(x: Any) -> float | None:
    """``x`` as a Python float when that costs no device synchronisation, else None."""
    if isinstance(x, Tensor):
        return float(x) if x.device.type == "cpu" else None
    return float(x)


def lr_scaled(group: Group, weight_decay: Any, scale: Any) -> float | None:
    """λ in torch's convention, where the decay per step is lr·λ: λ·s_t/lr_t.

    None when that would need a device synchronisation (λ or lr on an accelerator).
    """
    if group["weight_decay_scaling"] == "lr":
        return weight_decay
    values = [as_float(x) for x in (weight_decay, scale, group["lr"])]
    if any(v is None for v in values) or values[2] == 0:
        return None
    weight_decay, scale, lr = values
    return weight_decay * scale / lr


def _check_factor(index: int, group: Group, factor: Any, scale: Any) -> None:
    value = as_float(factor)
    if value is None or value > 0:
        return
    scaling = group["weight_decay_scaling"]
    s = {
        "lr": f"s = lr = {_show(group['lr'])}",
        "schedule": f"s = lr / lr_ref = {_show(group['lr'])} / {_show(group['lr_ref'])}"
        f" = {_show(scale)}",
        "corrected": f"s = lr * lr / lr_ref = {_show(group['lr'])}^2 / "
        f"{_show(group['lr_ref'])} = {_show(scale)}",
        "none": "s = 1",
    }[scaling]
    _rule.check_decoupled_factor(
        value,
        where=f"in param group {index}",
        scale=f"{s}, weight_decay={_show(group['weight_decay'])}, "
        f"weight_decay_scaling={scaling!r}",
        fix=f"lower {'lr or ' if scaling != 'none' else ''}weight_decay"
        f"{' or raise lr_ref' if scaling in _rule.SCALINGS_WITH_LR_REF else ''}",
    )


def _show(x: Any) -> str:
    value = as_float(x)
    return repr(x) if value is None else f"{value:.6g}"
