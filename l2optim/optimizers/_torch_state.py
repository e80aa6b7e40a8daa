"""An l2optim checkpoint that the torch.optim class of the same name continues.

A checkpoint of ``l2optim.SGDW`` loads without complaint into ``torch.optim.SGD``, which
ignores ``decoupled_weight_decay``: the next steps apply coupled decay with the decoupled
λ, a different regulariser. :func:`to_torch_state_dict` translates each param group into
the torch class's own terms, and refuses what torch cannot do; the docs' "Migrating" page
has the table of what torch can continue.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

__all__ = [
    "per_unit_lr",
    "refuse_unless",
    "register_translation",
    "to_torch_state_dict",
    "value",
]

#: Group entries no torch class knows.
_OURS = ("weight_decay_scaling", "lr_ref", "cautious_weight_decay", "decay_to_reference")


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
    translation = _TRANSLATIONS[base]
    groups = []
    for index, group in enumerate(saved["param_groups"]):
        # By the flags, not today's λ: a schedule may have set it to 0 for now.
        if group.get("decay_to_reference"):
            raise ValueError(
                f"param group {index}: no torch.optim equivalent: it decays towards reference "
                "weights (decay_towards), which torch's classes cannot"
            )
        unknown = _OURS + translation.unknown_to_torch
        torch_group = {k: v for k, v in group.items() if k not in unknown}
        if group["decoupled_weight_decay"] and group.get("cautious_weight_decay"):
            refuse_unless(
                approximate,
                index,
                "cautious_weight_decay=True masks the decay by the sign of each update, "
                "which torch's classes cannot; approximate=True gives plain decoupled decay",
            )
        if group["decoupled_weight_decay"] and value(group["weight_decay"]) != 0:
            torch_group.update(translation.translate(index, group, approximate))
        groups.append(torch_group)
    return {"state": saved["state"], "param_groups": groups}


@dataclass(frozen=True)
class _Translation:
    """How a family's decoupled param groups become its torch class's."""

    #: The entries that tell its param groups apart in a saved state_dict.
    signature: frozenset[str]
    #: (index, group, approximate) → the entries that replace the group's.
    translate: Callable[[int, dict[str, Any], bool], dict[str, Any]]
    #: Entries of ours that the torch class has no use for.
    unknown_to_torch: tuple[str, ...]


#: torch class → how its family's groups translate (each family registers its own).
_TRANSLATIONS: dict[type[torch.optim.Optimizer], _Translation] = {}


def register_translation(
    base: type[torch.optim.Optimizer],
    *,
    signature: set[str],
    translate: Callable[[int, dict[str, Any], bool], dict[str, Any]],
    unknown_to_torch: tuple[str, ...] = (),
) -> None:
    """Say how a decoupled param group of ``base``'s family becomes one of ``base`` itself."""
    _TRANSLATIONS[base] = _Translation(frozenset(signature), translate, unknown_to_torch)


def _base_of_saved(saved: Mapping[str, Any]) -> type[torch.optim.Optimizer]:
    groups = saved.get("param_groups")
    if not isinstance(groups, list) or "state" not in saved or not groups:
        raise TypeError(
            "optimizer must be an optimizer or its state_dict (a dict with 'state' and "
            "'param_groups'), got a mapping with keys "
            f"{sorted(map(str, saved))}"
        )
    keys = set(groups[0])
    bases = [base for base, t in _TRANSLATIONS.items() if t.signature <= keys]
    if len(bases) != 1 or "weight_decay_scaling" not in keys:
        raise TypeError(
            "the state_dict is not one an l2optim SGD, Adam or RMSprop saved: its first "
            f"param group has the entries {sorted(keys - {'params'})}"
        )
    return bases[0]


def per_unit_lr(index: int, group: dict[str, Any], approximate: bool) -> float:
    """λ·s/lr: a constant for "lr" and "schedule", today's value only for "corrected" and
    "none"."""
    scaling, weight_decay = group["weight_decay_scaling"], value(group["weight_decay"])
    if scaling == "lr":
        return weight_decay
    if scaling == "schedule":
        return weight_decay / value(group["lr_ref"])
    if scaling == "corrected":
        refuse_unless(
            approximate,
            index,
            "weight_decay_scaling='corrected' decays by weight_decay * lr**2 / lr_ref per "
            "step, which torch's classes cannot; approximate=True gives "
            "weight_decay * lr / lr_ref at today's lr",
        )
        return weight_decay * value(group["lr"]) / value(group["lr_ref"])
    refuse_unless(
        approximate,
        index,
        "weight_decay_scaling='none' decays by weight_decay per step whatever the lr, which "
        "torch's classes cannot; approximate=True gives weight_decay/lr at today's lr",
    )
    return weight_decay / value(group["lr"])


def refuse_unless(approximate: bool, index: int, why: str) -> None:
    if not approximate:
        raise ValueError(f"param group {index}: no exact torch.optim equivalent: {why}")


def value(x: Any) -> float:
    return float(x) if isinstance(x, torch.Tensor) else x
