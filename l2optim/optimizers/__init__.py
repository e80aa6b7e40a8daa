"""The optimizers: both forms of weight decay behind torch.optim's interface.

Inside, from the ground up: the decay rule on lists of tensors (``_rule``); the step
planner, which decides for each param group where the rule sits in a step (``_mixin``,
with ``_memo`` keeping a plan while its group is unchanged); what runs the base update
(``_implementation``: torch's loop, foreach or fused kernels, ``_compiled`` one-pass
updates, ``_triton`` kernels); the classes (``_classes``) and ``with_weight_decay``; the
param groups (``_groups``) and the way back to torch.optim's checkpoints
(``_torch_state``). Everything public is exported here and by :mod:`l2optim`.

The rest of the package uses these names only: the decay rule's scalings and factor for
code that applies it outside an optimizer (stacked training, conversions).
"""

from __future__ import annotations

from l2optim.optimizers._classes import SGD, SGDW, Adam, AdamW, RMSprop, RMSpropW
from l2optim.optimizers._groups import decay_groups
from l2optim.optimizers._rule import (
    WEIGHT_DECAY_SCALINGS,
    LrAboveReferenceWarning,
    check_weight_decay_scaling,
    decay_scale,
    decoupled_factor,
)
from l2optim.optimizers._torch_state import to_torch_state_dict
from l2optim.optimizers._with_weight_decay import with_weight_decay

__all__ = [
    "SGD",
    "SGDW",
    "WEIGHT_DECAY_SCALINGS",
    "Adam",
    "AdamW",
    "LrAboveReferenceWarning",
    "RMSprop",
    "RMSpropW",
    "check_weight_decay_scaling",
    "decay_groups",
    "decay_scale",
    "decoupled_factor",
    "to_torch_state_dict",
    "with_weight_decay",
]
