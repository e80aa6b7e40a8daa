"""Param groups for Muon: hidden weight matrices to Muon, everything else to another optimizer.

Muon (Jordan et al. 2024; ``torch.optim.Muon`` from torch 2.9) orthogonalises each update
of a 2-D weight, which suits the hidden layers' matrices only: embeddings, the output
layer, biases and norms go to an elementwise optimizer such as AdamW. Both keep the
decay that :func:`~l2optim.decay_groups` gives each parameter. ``torch.optim.Muon``
decays as decoupled weight decay with the ``"lr"`` scaling does (p ← p·(1 − lr·λ), with
the lr before its shape adjustment).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

from torch import nn

from l2optim.optimizers._groups import (
    EMBEDDING_TYPES,
    clean_name,
    decay_groups,
    unwrapped,
    warn_unmatched,
)

__all__ = ["muon_groups"]


def muon_groups(
    model: nn.Module,
    weight_decay: float,
    *,
    fallback: Iterable[str] = (),
    **decay_groups_options: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split :func:`~l2optim.decay_groups` between Muon and another optimizer.

    A parameter goes to Muon when it is a matrix (two dimensions), not an embedding's
    weight, and not named by a ``fallback`` pattern; the rest go to the other optimizer.
    Each part keeps its decay group's ``weight_decay`` and ``param_names``.

    Args:
        model: the model, as for :func:`~l2optim.decay_groups`.
        weight_decay: λ of the decayed parameters in both parts.
        fallback: glob patterns (:mod:`fnmatch`) on qualified names of matrices to keep
            off Muon: the output layer above all (``"head.*"``, ``"lm_head.weight"``),
            which Muon's authors train with AdamW. A pattern that matches no parameter
            draws a warning.
        **decay_groups_options: passed on to :func:`~l2optim.decay_groups` (``exclude``,
            ``decay_embeddings``, ...).

    Returns:
        ``(muon, other)``: two lists of param groups, empty groups left out.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Embedding(10, 8), torch.nn.Linear(8, 8),
        ...                             torch.nn.LayerNorm(8), torch.nn.Linear(8, 10))
        >>> muon, other = l2optim.muon_groups(model, 0.1, fallback=["3.*"])
        >>> [(g["param_names"], g["weight_decay"]) for g in muon]
        [(['1.weight'], 0.1)]
        >>> [(g["param_names"], g["weight_decay"]) for g in other]
        [(['0.weight', '3.weight'], 0.1), (['1.bias', '2.weight', '2.bias', '3.bias'], 0.0)]
    """
    groups = decay_groups(model, weight_decay, **decay_groups_options)
    patterns = [fallback] if isinstance(fallback, str) else list(fallback)
    embeddings = {
        id(param)
        for module in unwrapped(model).modules()
        if isinstance(module, EMBEDDING_TYPES)
        for param in module.parameters(recurse=False)
    }
    matched: set[str] = set()
    muon, other = [], []
    for group in groups:
        parts: tuple[dict[str, list], dict[str, list]] = (
            {"params": [], "param_names": []},
            {"params": [], "param_names": []},
        )
        for param, name in zip(group["params"], group["param_names"], strict=True):
            hits = {p for p in patterns if fnmatch.fnmatchcase(clean_name(name), p)}
            matched |= hits
            to_muon = param.ndim == 2 and id(param) not in embeddings and not hits
            part = parts[0] if to_muon else parts[1]
            part["params"].append(param)
            part["param_names"].append(name)
        for part, into in zip(parts, (muon, other), strict=True):
            if part["params"]:
                into.append({**group, **part})
    names = [name for group in groups for name in group["param_names"]]
    warn_unmatched("muon_groups: fallback", [p for p in patterns if p not in matched], names)
    return muon, other
