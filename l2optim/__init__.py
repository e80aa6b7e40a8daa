"""l2optim: weight decay for PyTorch, correct, complete and easy to choose.

Two halves: :mod:`l2optim.optimizers` (the optimizers and the decay rule) and
:mod:`l2optim.selection` (choosing λ), over shared pieces (argument checks, torch's
private names, :mod:`l2optim.conversions`, :mod:`l2optim.data`, the command line).

``import l2optim as optim`` can replace ``from torch import optim``: the names this
package does not define (``lr_scheduler``, ``Adagrad``, ``Optimizer``, …) are
torch.optim's own.
"""

from __future__ import annotations

import sys as _sys

import torch.optim as _torch_optim

from l2optim import _moved, conversions, data
from l2optim.optimizers import (
    SGD,
    SGDW,
    Adam,
    AdamW,
    CosineWeightDecay,
    LambdaWeightDecay,
    LrAboveReferenceWarning,
    RMSprop,
    RMSpropW,
    WeightDecayScheduler,
    decay_groups,
    muon_groups,
    to_torch_state_dict,
    with_weight_decay,
)
from l2optim.selection import (
    CVCurve,
    Evaluation,
    FoldTrainer,
    KFoldObjective,
    LambdaAtEdgeWarning,
    LambdaRace,
    LambdaSearch,
    ObjectiveError,
    RidgeCVResult,
    Standardized,
    kfold_objective,
    kfold_splits,
    ridge_cv,
    select_lambda,
    select_lambda_fast,
)

__version__ = "0.1.0"

__all__ = [
    "SGD",
    "SGDW",
    "Adam",
    "AdamW",
    "CVCurve",
    "CosineWeightDecay",
    "Evaluation",
    "LambdaAtEdgeWarning",
    "LambdaRace",
    "LambdaSearch",
    "LambdaWeightDecay",
    "LrAboveReferenceWarning",
    "ObjectiveError",
    "FoldTrainer",
    "KFoldObjective",
    "RMSprop",
    "RMSpropW",
    "RidgeCVResult",
    "Standardized",
    "WeightDecayScheduler",
    "conversions",
    "data",
    "decay_groups",
    "muon_groups",
    "ridge_cv",
    "select_lambda",
    "select_lambda_fast",
    "to_torch_state_dict",
    "kfold_objective",
    "kfold_splits",
    "with_weight_decay",
]

_moved.install()

# ``import l2optim.lr_scheduler`` and ``from l2optim.swa_utils import ...`` work too.
for _name in ("lr_scheduler", "swa_utils"):
    _sys.modules.setdefault(f"{__name__}.{_name}", getattr(_torch_optim, _name))


def __getattr__(name: str):
    try:
        return getattr(_torch_optim, name)
    except AttributeError:
        raise AttributeError(f"module 'l2optim' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(dir(_torch_optim)))
