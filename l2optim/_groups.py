"""Parameter groups that decay weight matrices and leave the rest alone."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

from torch import nn

__all__ = ["decay_groups", "is_normalization"]

# Every normalisation layer torch ships; user layers are recognised by class name too.
_NORM_TYPES: tuple[type[nn.Module], ...] = tuple(
    t
    for t in (
        nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
        nn.LayerNorm,
        nn.GroupNorm,
        nn.LocalResponseNorm,
        getattr(nn, "RMSNorm", None),
    )
    if t is not None
)
_EMBEDDING_TYPES = (nn.Embedding, nn.EmbeddingBag)


def is_normalization(module: nn.Module) -> bool:
    """True for torch's normalisation layers and any layer whose class name ends in ``Norm``.

    The name rule catches the RMSNorm/LayerNorm copies that model libraries define.
    """
    return isinstance(module, _NORM_TYPES) or type(module).__name__.lower().endswith("norm")


def decay_groups(
    model: nn.Module,
    weight_decay: float,
    *,
    exclude: Iterable[str] = (),
    decay_embeddings: bool = True,
) -> list[dict[str, Any]]:
    """Param groups for an optimizer: decay the weights, not biases or normalisation layers.

    Args:
        model: the module whose trainable parameters (``requires_grad``) are grouped.
        weight_decay: λ for the decayed group; the other group gets 0.
        exclude: glob patterns (:mod:`fnmatch`) on qualified parameter names, such as
            ``"pos_embed"`` or ``"*.cls_token"``, to leave undecayed as well.
        decay_embeddings: whether ``nn.Embedding``/``nn.EmbeddingBag`` weights decay.

    Returns:
        Two param groups, the decayed parameters with ``weight_decay`` and the others
        with 0 (an empty group is left out). A tied parameter appears once, and is
        decayed only if none of its uses exempts it.

    Example:
        >>> opt = l2optim.AdamW(l2optim.decay_groups(model, 0.05), lr=1e-3)
    """
    patterns = [exclude] if isinstance(exclude, str) else list(exclude)
    order: dict[int, nn.Parameter] = {}
    exempt: set[int] = set()
    for module_name, module in model.named_modules(remove_duplicate=False):
        module_exempt = is_normalization(module) or (
            not decay_embeddings and isinstance(module, _EMBEDDING_TYPES)
        )
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            qualified = f"{module_name}.{name}" if module_name else name
            order.setdefault(id(param), param)
            if (
                module_exempt
                or name == "bias"
                or any(fnmatch.fnmatchcase(qualified, pattern) for pattern in patterns)
            ):
                exempt.add(id(param))
    decayed = [p for key, p in order.items() if key not in exempt]
    undecayed = [p for key, p in order.items() if key in exempt]
    groups = [
        {"params": decayed, "weight_decay": weight_decay},
        {"params": undecayed, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]
