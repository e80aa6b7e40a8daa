"""Parameter groups that decay weight matrices and leave the rest alone.

The rule is the one the ecosystem converged on (timm's ``param_groups_weight_decay``,
and what transformers' Trainer gets to by name): a parameter is exempt from decay when

* it has at most one dimension (biases, normalisation scales, layer scales such as
  ConvNeXt's ``gamma``, EVA's ``q_bias``/``v_bias``);
* it belongs to a normalisation layer, or is a bias of one of torch's own layers (also
  ``MultiheadAttention``'s ``in_proj_bias``/``bias_k``/``bias_v``, an RNN's ``bias_ih_l0``);
* the model names it in its own ``no_weight_decay()`` (timm's convention: ViT's
  ``pos_embed`` and ``cls_token``);
* it is an embedding (on request), or matches one of the user's ``exclude`` patterns.
"""

from __future__ import annotations

import fnmatch
import warnings
from collections.abc import Iterable
from typing import Any

from torch import nn

from l2optim import _compat
from l2optim.optimizers import _rule

__all__ = [
    "EMBEDDING_TYPES",
    "clean_name",
    "decay_groups",
    "is_normalization",
    "unwrapped",
    "warn_unmatched",
]

# Every normalisation layer torch ships; user layers are recognised by class name too.
_NORM_TYPES: tuple[type[nn.Module], ...] = tuple(
    t
    for t in (
        _compat.NORM_BASE,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
        nn.LayerNorm,
        nn.GroupNorm,
        nn.LocalResponseNorm,
        getattr(nn, "RMSNorm", None),
    )
    if t is not None
)
EMBEDDING_TYPES = (nn.Embedding, nn.EmbeddingBag)
# Wrappers that put their own component in every parameter name: torch.compile's
# ``_orig_mod``, FSDP's and activation checkpointing's wrapped modules.
_WRAPPER_COMPONENTS = frozenset(
    {"_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module"}
)
_DATA_PARALLEL = (nn.DataParallel, nn.parallel.DistributedDataParallel)


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
    decay_1d: bool = False,
    use_no_weight_decay: bool = True,
) -> list[dict[str, Any]]:
    """Param groups for an optimizer: decay the weights, not biases, norms or layer scales.

    Names are matched as the user wrote the model: a model wrapped by
    ``DistributedDataParallel``/``DataParallel`` (``module.``) or ``torch.compile``
    (``_orig_mod.``) is grouped by the names of the model inside.

    Args:
        model: the module whose trainable parameters (``requires_grad``) are grouped.
        weight_decay: λ for the decayed group; the other group gets 0.
        exclude: glob patterns (:mod:`fnmatch`) on qualified parameter names, such as
            ``"pos_embed"`` or ``"*.cls_token"``, to leave undecayed as well. A pattern
            that matches no parameter draws a warning (a misspelt name is otherwise
            silent).
        decay_embeddings: whether ``nn.Embedding``/``nn.EmbeddingBag`` weights decay.
        decay_1d: decay parameters with at most one dimension too, except biases and
            normalisation layers (the rule before timm's became the default).
        use_no_weight_decay: exempt the names the model lists in its own
            ``no_weight_decay()`` method, when it has one (timm's convention).

    Returns:
        Two param groups, the decayed parameters with ``weight_decay`` and the others
        with 0 (an empty group is left out). Each carries ``param_names``, the qualified
        names of its parameters, which torch's optimizers keep in their ``state_dict``.
        A tied parameter appears once, and is decayed only if none of its uses exempts
        it.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` (such as ``model.parameters()``).
        ValueError: ``weight_decay`` is negative or not finite.

    Example:
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8))
        >>> groups = l2optim.decay_groups(model, 0.05)
        >>> [(g["param_names"], g["weight_decay"]) for g in groups]
        [(['0.weight'], 0.05), (['0.bias', '1.weight', '1.bias'], 0.0)]
        >>> opt = l2optim.AdamW(groups, lr=1e-3)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(
            "decay_groups needs the model itself (an nn.Module), to see its layers and "
            f"parameter names; got {type(model).__name__}. Call decay_groups(model, "
            f"{weight_decay!r}), not decay_groups(model.parameters(), ...)"
        )
    _rule.check_weight_decay("weight_decay", weight_decay)
    model = unwrapped(model)
    patterns = [exclude] if isinstance(exclude, str) else list(exclude)
    own = list(model.no_weight_decay()) if use_no_weight_decay and _has_own_list(model) else []
    matched: set[str] = set()
    names: dict[int, str] = {}
    order: dict[int, nn.Parameter] = {}
    exempt: set[int] = set()
    for module_name, module in model.named_modules(remove_duplicate=False):
        module_exempt = is_normalization(module) or (
            not decay_embeddings and isinstance(module, EMBEDDING_TYPES)
        )
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            qualified = clean_name(f"{module_name}.{name}" if module_name else name)
            order.setdefault(id(param), param)
            names.setdefault(id(param), qualified)
            hits = {p for p in patterns if fnmatch.fnmatchcase(qualified, p)}
            matched |= hits
            if (
                module_exempt
                or hits
                or _is_bias(module, name)
                or (not decay_1d and param.ndim <= 1)
                or any(fnmatch.fnmatchcase(qualified, p) for p in own)
            ):
                exempt.add(id(param))
    warn_unmatched(
        "decay_groups: exclude", [p for p in patterns if p not in matched], list(names.values())
    )
    groups = []
    for decays, value in ((True, weight_decay), (False, 0.0)):
        keys = [key for key in order if (key not in exempt) == decays]
        if keys:
            groups.append(
                {
                    "params": [order[key] for key in keys],
                    "param_names": [names[key] for key in keys],
                    "weight_decay": value,
                }
            )
    return groups


def _is_bias(module: nn.Module, name: str) -> bool:
    """A bias by name: ``bias`` anywhere, any bias of torch's own layers."""
    return name == "bias" or (type(module).__module__.startswith("torch.nn") and "bias" in name)


def unwrapped(model: nn.Module) -> nn.Module:
    """The model a data-parallel or compiled wrapper holds."""
    while True:
        if isinstance(model, _DATA_PARALLEL):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def clean_name(name: str) -> str:
    return ".".join(part for part in name.split(".") if part not in _WRAPPER_COMPONENTS)


def _has_own_list(model: nn.Module) -> bool:
    return callable(getattr(model, "no_weight_decay", None))


def warn_unmatched(what: str, patterns: list[str], names: list[str]) -> None:
    """Warn of each pattern (of the argument ``what`` names) that matched no parameter."""
    for pattern in patterns:
        warnings.warn(
            f"{what} pattern {pattern!r} matches no trainable parameter; "
            f"the names look like {', '.join(repr(n) for n in names[:4])}"
            f"{', ...' if len(names) > 4 else ''}",
            UserWarning,
            stacklevel=3,
        )
