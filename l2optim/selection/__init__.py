"""Choosing λ: cross-validation curves over the weight decay, and the searches that make them.

Inside: the CV curve every search returns (``_curve``); ridge regression's exact curve
from one SVD (``_ridge``); the grid-then-Brent search for any objective and its
resumable log (``_search``, ``_log``); k-fold objectives on executors (``_kfold``); the
fold trainer for torch modules (``_trainer``), its stacked training of many runs at once
(``_stacked``); and the race over λ on stacked training (``_race``, ``_select_fast``).
It uses the optimizers through :mod:`l2optim.optimizers`'s public names only.
"""

from __future__ import annotations

from l2optim.selection import _race
from l2optim.selection._curve import CVCurve, Evaluation, LambdaAtEdgeWarning
from l2optim.selection._kfold import KFoldObjective, kfold_objective, kfold_splits
from l2optim.selection._ridge import RidgeCVResult, ridge_cv
from l2optim.selection._runs import Reported
from l2optim.selection._search import LambdaSearch, ObjectiveError, select_lambda
from l2optim.selection._select_fast import LambdaRace, select_lambda_fast
from l2optim.selection._stacked import FoldStacks, ModelStack
from l2optim.selection._trainer import FoldData, FoldTrainer, Scaling, Standardized

#: Each way the race's refinement at the last rung can end (``LambdaRace.stop``), with
#: what it means.
STOP_REASONS = _race.STOP_REASONS
#: The type of ``LambdaRace.stop``: ``Literal["settled", "budget", "bound", "repeat",
#: "diverged"]``.
RaceStop = _race.RaceStop

__all__ = [
    "STOP_REASONS",
    "CVCurve",
    "Evaluation",
    "FoldData",
    "FoldStacks",
    "FoldTrainer",
    "KFoldObjective",
    "LambdaAtEdgeWarning",
    "LambdaRace",
    "LambdaSearch",
    "ModelStack",
    "ObjectiveError",
    "RaceStop",
    "Reported",
    "RidgeCVResult",
    "Scaling",
    "Standardized",
    "kfold_objective",
    "kfold_splits",
    "ridge_cv",
    "select_lambda",
    "select_lambda_fast",
]
