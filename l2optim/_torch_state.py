"""An l2optim checkpoint that the torch.optim class of the same name continues.

A checkpoint of ``l2optim.SGDW`` loads without complaint into ``torch.optim.SGD``, which
ignores ``decoupled_weight_decay``: the next steps apply coupled decay with the decoupled
λ, a different regulariser. :func:`to_torch_state_dict` translates each param group into
the torch class's own terms, and refuses what torch cannot do.

What torch can continue, per param group with decoupled decay:

============================  ==========================  ====================================
class                         scaling                     torch equivalent
============================  ==========================  ====================================
SGD without momentum          ``"lr"``, ``"schedule"``    coupled λ·s/lr (the same update)
Adam                          ``"lr"``, ``"schedule"``    ``decoupled_weight_decay=True``, λ·s/lr
SGD with momentum             any                         coupled λ of the same fixed point
                                                          (``approximate=True``)
SGD, Adam                     ``"none"``                  λ/lr at today's lr (``approximate=True``)
RMSprop                       any                         none (its decoupled form ends in a box)
============================  ==========================  ====================================

s/lr is 1 for ``"lr"`` and 1/lr_ref for ``"schedule"`` whatever the schedule does, hence
exact; for ``"none"`` it is 1/lr_t and holds only while the lr stays where it is.
"""

from __future__ import annotations

from typing import Any

import torch

from l2optim import conversions

__all__ = ["to_torch_state_dict"]

#: Group entries no torch class knows.
_OURS = ("weight_decay_scaling", "lr_ref")


def to_torch_state_dict(
    optimizer: torch.optim.Optimizer, *, approximate: bool = False
) -> dict[str, Any]:
    """The ``state_dict`` of ``optimizer`` in the terms of its torch.optim namesake.

    Coupled groups carry over as they are. Decoupled groups become what the torch class
    can run (see the table in :mod:`l2optim._torch_state`): the same update where one
    exists; with ``approximate=True``, the coupled λ of the same fixed point (SGD with
    momentum) or the λ that decays alike at the current lr (scaling ``"none"``). The
    state tensors are shared with ``optimizer``, as in ``optimizer.state_dict()``.

    Args:
        optimizer: an ``l2optim.SGD``, ``Adam`` or ``RMSprop`` (or their W variants).
        approximate: accept equivalents that are not the same update.

    Returns:
        A ``state_dict`` for ``torch.optim.SGD``/``Adam``/``AdamW``/``RMSprop``.

    Raises:
        TypeError: ``optimizer`` is not one of those classes.
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
    base = next((b for b in _TRANSLATIONS if isinstance(optimizer, b)), None)
    if base is None or "weight_decay_scaling" not in optimizer.defaults:
        raise TypeError(
            "optimizer must be an l2optim SGD, Adam or RMSprop (or SGDW, AdamW, RMSpropW), "
            f"got {type(optimizer).__name__}"
        )
    translate, unknown_to_torch = _TRANSLATIONS[base]
    saved = optimizer.state_dict()
    groups = []
    for index, group in enumerate(saved["param_groups"]):
        torch_group = {k: v for k, v in group.items() if k not in _OURS + unknown_to_torch}
        if group["decoupled_weight_decay"] and _value(group["weight_decay"]) != 0:
            torch_group.update(translate(index, group, approximate))
        groups.append(torch_group)
    return {"state": saved["state"], "param_groups": groups}


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
            initial_lr=_value(group["lr_ref"]),
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
