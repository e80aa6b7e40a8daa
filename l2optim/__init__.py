"""l2optim: weight decay for PyTorch, correct, complete and easy to choose.

``import l2optim as optim`` can replace ``from torch import optim``: the names this
package does not define (``lr_scheduler``, ``Adagrad``, ``Optimizer``, …) are
torch.optim's own.
"""

from __future__ import annotations

import sys as _sys

import torch.optim as _torch_optim

from l2optim import conversions, data
from l2optim._curve import CVCurve, Evaluation, LambdaAtEdgeWarning
from l2optim._decay import LrAboveReferenceWarning
from l2optim._fast import LambdaRace, select_lambda_fast
from l2optim._groups import decay_groups
from l2optim._kfold import KFoldObjective, kfold_objective, kfold_splits
from l2optim._optimizers import SGD, SGDW, Adam, AdamW, RMSprop, RMSpropW
from l2optim._ridge import RidgeCVResult, ridge_cv
from l2optim._search import LambdaSearch, ObjectiveError, select_lambda
from l2optim._torch_state import to_torch_state_dict
from l2optim._trainer import FoldTrainer, Standardized
from l2optim._with_weight_decay import with_weight_decay

__version__ = "0.1.0"

__all__ = [
    "SGD",
    "SGDW",
    "Adam",
    "AdamW",
    "CVCurve",
    "Evaluation",
    "LambdaAtEdgeWarning",
    "LambdaRace",
    "LambdaSearch",
    "LrAboveReferenceWarning",
    "ObjectiveError",
    "FoldTrainer",
    "KFoldObjective",
    "RMSprop",
    "RMSpropW",
    "RidgeCVResult",
    "Standardized",
    "conversions",
    "data",
    "decay_groups",
    "ridge_cv",
    "select_lambda",
    "select_lambda_fast",
    "to_torch_state_dict",
    "kfold_objective",
    "kfold_splits",
    "with_weight_decay",
]

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
