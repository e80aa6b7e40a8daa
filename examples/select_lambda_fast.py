r"""
select_lambda_fast: race λ instead of cross-validating every λ to the end
=========================================================================

:func:`l2optim.select_lambda` on a k-fold objective trains every fold to the end for
every λ it tries: about 12–16 λ × 5 folds, some 50–64 times the cost of training the
final model once. :func:`l2optim.select_lambda_fast` races the λ instead, on two folds
(every row scored once, for one training per λ). Every λ of a log grid trains on both
folds for a quarter of the epochs; the better ones (a window of the grid leaning to
larger λ, since weight decay acts late) continue their runs for twice as long, and so
on, within a budget counted in training runs (5 by default). Each half trains on half
the rows, at λ scaled by 1.6^0.5 (1.6 = 0.8 n / 0.5 n: fewer rows want a larger λ,
and ``scaling_exponent=0.5`` says how much larger), so that the λ it reports are on
5-fold CV's scale. All runs of a rung train together as one stacked
model, with the numbers the :class:`~l2optim.FoldTrainer` would give each one. The
choice, ``lambda_chosen``, is the last rung's best λ moved halfway (in ln λ) to the
vertex of the parabola through it and its neighbours, where they bracket a minimum.

Here an MLP is trained with coupled :class:`l2optim.Adam` on 342 rows of the diabetes
data (Efron et al., 2004; shipped with l2optim); the other 100 rows are a test set that
neither search sees.
"""

# %%
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import torch

import l2optim

# Small models: one torch thread. Extra intra-op threads only add synchronisation to
# steps this small (and fight other processes for the cores).
torch.set_num_threads(1)

X, y, _ = l2optim.data.load_diabetes()
X = ((X - X.mean(0)) / X.std(0)).astype(np.float32)
y = ((y - y.mean()) / y.std()).astype(np.float32)
order = np.random.default_rng(0).permutation(len(y))
train, test = order[:342], order[342:]


def mlp(n_features: int, hidden: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(n_features, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1)
    )


trainer = l2optim.FoldTrainer(
    partial(mlp, X.shape[1], 64),
    X[train],
    y[train],
    optimizer=l2optim.Adam,
    optimizer_kwargs={"lr": 2e-2},
    epochs=30,
    batch_size=64,
)
bounds = (1e-4, 3.0)

# %%
# The race
# --------
# The default budget of 5 training runs; the result counts what it spent (optimizer
# steps of every run, over the steps of one training on all 342 rows).
race = l2optim.select_lambda_fast(trainer, bounds)
print(
    f"race: lambda_min={race.lambda_min:.4g} lambda_chosen={race.lambda_chosen:.4g} "
    f"run_equivalents={race.run_equivalents:.2f} "
    f"optimizer_steps={race.optimizer_steps} seconds={race.seconds:.1f}"
)
for rung in race.rungs:
    best = rung.lambdas[np.argmin(rung.means)]
    print(f"rung: epochs={rung.epochs} racing={len(rung.lambdas)} best={best:.4g}")

# %%
# Full k-fold cross-validation
# ----------------------------
# The exact search on five folds. Its cost: every evaluation trains all five folds to
# the end.
objective = l2optim.kfold_objective(trainer, len(train), folds=5)
search = l2optim.select_lambda(objective, bounds, n_grid=5, xtol=0.2, progress=False)
fold_steps = sum(np.ceil(len(rows) / 64) for rows, _ in objective.splits)
full_runs = len(search.evaluations) * fold_steps / np.ceil(len(train) / 64)
print(
    f"full CV: lambda_min={search.lambda_min:.4g} run_equivalents={full_runs:.2f} "
    f"evaluations={len(search.evaluations)}"
)

# %%
# The race against the full curve
# -------------------------------
# Each rung's mean validation MSE on the two folds (lighter: shorter training), the
# last rung with its standard errors, and full 5-fold CV's curve. Models trained on half
# the rows score worse, so the race's curves lie higher; what matters is where their
# minimum falls. After a quarter of the epochs the smallest λ look best; the window
# keeps the larger ones that win at the end.
ax = race.plot()
full = sorted(search.evaluations, key=lambda e: e.lam)
ax.plot([e.lam for e in full], [e.mean for e in full], "k--", lw=1, label="full 5-fold CV")
ax.axvline(search.lambda_min, color="k", ls=":", lw=1)
ax.set_ylabel("validation MSE")
ax.legend(fontsize=7)
plt.show()

# %%
# On the test rows
# ----------------
# The final model trains on all 342 rows at each chosen λ (``trainer.fit``) and is
# scored on the 100 rows no search saw.
X_test, y_test = torch.as_tensor(X[test]), torch.as_tensor(y[test])
for name, lam in (("race", race.lambda_chosen), ("full CV", search.lambda_min), ("zero", 0.0)):
    model = trainer.fit(lam)
    with torch.no_grad():
        prediction = model(X_test).squeeze(-1)
    mse = float(((prediction - y_test) ** 2).mean())
    print(f"test: method={name!r} lam={lam:.4g} mse={mse:.4f}")
