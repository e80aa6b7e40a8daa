"""The optimizers: both forms of weight decay behind torch.optim's interface.

Inside, from the ground up: the decay rule on lists of tensors (``_rule``); the step
planner, a pure function that decides for each param group where the rule sits in a
step (``_planner``); the mixin that carries out its plans over any torch optimizer
(``_mixin``, with ``_memo`` keeping a plan while its group is unchanged); what runs the
base update (``_implementation``: torch's loop, foreach or fused kernels; ``_compiled``
one-pass updates; ``_triton`` kernels). Then one module per family, holding what is
particular to it: its record for the planner, its classes, its one-pass updates, the way
back to its torch.optim checkpoint and its base update on tensor lists (``_sgd``,
``_adam``, ``_rmsprop``); and ``with_weight_decay`` for any other optimizer, weight
decay on a schedule (``_decay_schedule``), the param groups (``_groups``, and
``_muon``'s split for Muon), the checkpoint translation (``_torch_state``) and the base
updates' registry (``_functional``).

The rest of the package uses the names exported here only: besides the classes, the
decay rule and the families' base updates, for code that applies them outside an
optimizer (stacked training; the conversions).
"""

from __future__ import annotations

from l2optim.optimizers import _rule
from l2optim.optimizers._adam import Adam, AdamW
from l2optim.optimizers._decay_schedule import (
    CosineWeightDecay,
    LambdaWeightDecay,
    WeightDecayScheduler,
)
from l2optim.optimizers._functional import FunctionalUpdate, functional_update
from l2optim.optimizers._groups import decay_groups
from l2optim.optimizers._muon import muon_groups
from l2optim.optimizers._rmsprop import RMSprop, RMSpropW
from l2optim.optimizers._rule import (
    LrAboveReferenceWarning,
    add_coupled_decay,
    check_decoupled_factor,
    check_weight_decay_scaling,
    decay_scale,
    decoupled_factor,
    shrink,
)
from l2optim.optimizers._sgd import SGD, SGDW
from l2optim.optimizers._torch_state import to_torch_state_dict
from l2optim.optimizers._with_weight_decay import with_weight_decay

#: The values ``weight_decay_scaling`` takes: ``"lr"``, ``"schedule"``, ``"corrected"`` and
#: ``"none"``.
WEIGHT_DECAY_SCALINGS = _rule.WEIGHT_DECAY_SCALINGS

__all__ = [
    "SGD",
    "SGDW",
    "WEIGHT_DECAY_SCALINGS",
    "Adam",
    "AdamW",
    "CosineWeightDecay",
    "FunctionalUpdate",
    "LambdaWeightDecay",
    "LrAboveReferenceWarning",
    "RMSprop",
    "RMSpropW",
    "add_coupled_decay",
    "check_decoupled_factor",
    "check_weight_decay_scaling",
    "decay_groups",
    "decay_scale",
    "decoupled_factor",
    "functional_update",
    "muon_groups",
    "shrink",
    "to_torch_state_dict",
    "WeightDecayScheduler",
    "with_weight_decay",
]
