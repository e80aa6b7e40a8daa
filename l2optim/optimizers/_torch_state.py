"""An l2optim checkpoint that the torch.optim class of the same name continues.

A checkpoint of ``l2optim.SGDW`` loads without complaint into ``torch.optim.SGD``, which
ignores ``decoupled_weight_decay``: the next steps apply coupled decay with the decoupled
λ, a different regulariser. :func:`to_torch_state_dict` translates each param group into
the torch class's own terms, and refuses what torch cannot do; the docs' "Migrating" page
has the table of what torch can continue.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from l2optim import conversions

__all__ = ["to_torch_state_dict"]

#: Group entries no torch class knows.
_OURS = ("weight_decay_scaling", "lr_ref")


def to_torch_state_dict(
    optimizer: torch.optim.Optimizer | Mapping[str, Any], *, approximate: bool = False
) -> dict[str, Any]:
    """The ``state_dict`` of ``optimizer`` in the terms of its torch.optim namesake.

    Coupled groups carry over as they are. Decoupled groups become what the torch class
    can run (the table on the docs' "Migrating" page): the same update where one exists;
    with ``approximate=True``, the coupled λ of the same fixed point (SGD with momentum)
    or the λ that decays alike at the current lr (scaling ``"none"``).

    The result shares its state tensors with the source, as ``optimizer.state_dict()``
    does: copy it (``copy.deepcopy``) before changing either. Its param groups are the
    source's, in order: the torch optimizer that loads it must be built with the same
    groups (the same ``l2optim.decay_groups(model, ...)``, say), or torch refuses it
    ("different number of parameter groups").

    Args:
        optimizer: an ``l2optim.SGD``, ``Adam`` or ``RMSprop`` (or their W variants), or a
            ``state_dict`` one of them saved (``torch.load`` of a checkpoint); which of
            the three is read from its param groups' entries.
        approximate: accept equivalents that are not the same update.

    Returns:
        A ``state_dict`` for ``torch.optim.SGD``/``Adam``/``AdamW``/``RMSprop``.

    Raises:
        TypeError: ``optimizer`` is not one of those classes, or a ``state_dict`` that
            none of them saved.
        ValueError: a param group has decoupled decay that torch cannot reproduce (or not
            exactly, without ``approximate``); the message names the group and says why.

    Example:
        >>> model = torch.nn.Linear(4, 1)
        >>> sgdw = l2optim.SGDW(model.parameters(), lr=0.1, weight_decay=1e-2)
        >>> torch_opt = torch.optim.SGD(model.parameters())
        >>> torch_opt.load_state_dict(l2optim.to_torch_state_dict(sgdw))
        >>> torch_opt.param_groups[0]["weight_decay"]  # without momentum, the same update
        0.01
    """
    if isinstance(optimizer, Mapping):
        saved, base = optimizer, _base_of_saved(optimizer)
    else:
        base = next((b for b in _TRANSLATIONS if isinstance(optimizer, b)), None)
        if base is None or "weight_decay_scaling" not in optimizer.defaults:
            raise TypeError(
                "optimizer must be an l2optim SGD, Adam or RMSprop (or SGDW, AdamW, "
                f"RMSpropW), or a state_dict of one, got {type(optimizer).__name__}"
            )
        saved = optimizer.state_dict()
    translate, unknown_to_torch = _TRANSLATIONS[base]
    groups = []
    for index, group in enumerate(saved["param_groups"]):
        torch_group = {k: v for k, v in group.items() if k not in _OURS + unknown_to_torch}
        if group["decoupled_weight_decay"] and _value(group["weight_decay"]) != 0:
            torch_group.update(translate(index, group, approximate))
        groups.append(torch_group)
    return {"state": saved["state"], "param_groups": groups}


#: The entries that tell each base's param groups apart in a saved state_dict.
_SIGNATURES = {
    torch.optim.SGD: {"momentum", "dampening", "nesterov"},
    torch.optim.Adam: {"betas", "amsgrad"},
    torch.optim.RMSprop: {"alpha", "centered"},
}


def _base_of_saved(saved: Mapping[str, Any]) -> type[torch.optim.Optimizer]:
    groups = saved.get("param_groups")
    if not isinstance(groups, list) or "state" not in saved or not groups:
        raise TypeError(
            "optimizer must be an optimizer or its state_dict (a dict with 'state' and "
            "'param_groups'), got a mapping with keys "
            f"{sorted(map(str, saved))}"
        )
    keys = set(groups[0])
    bases = [base for base, signature in _SIGNATURES.items() if signature <= keys]
    if len(bases) != 1 or "weight_decay_scaling" not in keys:
        raise TypeError(
            "the state_dict is not one an l2optim SGD, Adam or RMSprop saved: its first "
            f"param group has the entries {sorted(keys - {'params'})}"
        )
    return bases[0]


def _sgd(index: int, group: dict[str, Any], approximate: bool) -> dict[str, Any]:
    lr, momentum = _value(group["lr"]), group["momentum"]
    if momentum != 0:
        _refuse_unless(
            approximate,
            index,
            "decoupled SGD with momentum follows another trajectory than any coupled SGD; "
            "approximate=True gives the coupled weight_decay with the same fixed point",
        )
        coupled = conversions.coupled_from_decoupled(
            _value(group["weight_decay"]),
            lr=lr,
            momentum=momentum,
            dampening=group["dampening"],
            weight_decay_scaling=group["weight_decay_scaling"],
            lr_ref=_value(group["lr_ref"]),
        )
    else:
        coupled = _per_unit_lr(index, group, approximate)
    return {"weight_decay": coupled}


def _adam(index: int, group: dict[str, Any], approximate: bool) -> dict[str, Any]:
    # torch's AdamW kernels decay by lr·λ: λ·s/lr is the same decay.
    return {"weight_decay": _per_unit_lr(index, group, approximate)}


def _rmsprop(index: int, group: dict[str, Any], approximate: bool) -> dict[str, Any]:
    raise ValueError(
        f"param group {index}: torch's RMSprop has no decoupled weight decay, and no coupled "
        "weight_decay shares its fixed point (decoupled RMSprop ends in a box, not at "
        "ridge); resume with l2optim.RMSprop, or set decoupled_weight_decay=False first"
    )


#: torch class → (its group from a decoupled group, our entries it has no use for).
_TRANSLATIONS = {
    torch.optim.SGD: (_sgd, ("decoupled_weight_decay",)),
    torch.optim.Adam: (_adam, ()),  # torch's Adam has decoupled_weight_decay itself
    torch.optim.RMSprop: (_rmsprop, ("decoupled_weight_decay", "fused")),
}


def _per_unit_lr(index: int, group: dict[str, Any], approximate: bool) -> float:
    """λ·s/lr: a constant for "lr" and "schedule", today's value only for "none"."""
    scaling, weight_decay = group["weight_decay_scaling"], _value(group["weight_decay"])
    if scaling == "lr":
        return weight_decay
    if scaling == "schedule":
        return weight_decay / _value(group["lr_ref"])
    _refuse_unless(
        approximate,
        index,
        "weight_decay_scaling='none' decays by weight_decay per step whatever the lr, which "
        "torch's classes cannot; approximate=True gives weight_decay/lr at today's lr",
    )
    return weight_decay / _value(group["lr"])


def _refuse_unless(approximate: bool, index: int, why: str) -> None:
    if not approximate:
        raise ValueError(f"param group {index}: no exact torch.optim equivalent: {why}")


def _value(x: Any) -> float:
    return float(x) if isinstance(x, torch.Tensor) else x
