r"""
select_lambda: λ for a small MLP, folds on a process pool
=========================================================

Ridge has a closed-form CV curve; a neural network does not. For any model you can
train, :func:`l2optim.select_lambda` runs the same search — a log grid, then
Brent's method on :math:`\ln\lambda` — on a k-fold objective whose folds run in
parallel on any :class:`concurrent.futures.Executor`.

Here a one-hidden-layer MLP is trained with :class:`l2optim.AdamW` (decoupled
decay; the biases left undecayed by :func:`l2optim.decay_groups`) on the diabetes
data (Efron et al., 2004; the scikit-learn copy, BSD-3-Clause, shipped with
l2optim), five folds per λ, two at a time on a local process pool.
"""

# %%
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import torch

import l2optim

X, y, _ = l2optim.data.load_diabetes()
X = (X - X.mean(0)) / X.std(0)
y = (y - y.mean()) / y.std()


# %%
# The model and the fold trainer
# ------------------------------
# The trainer is shipped to the worker processes, so the model is built by a
# module-level function.
def mlp(n_features: int, hidden: int) -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(n_features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
    )


trainer = l2optim.FoldTrainer(
    partial(mlp, X.shape[1], 32),
    X.astype(np.float32),
    y.astype(np.float32),
    optimizer=l2optim.AdamW,
    optimizer_kwargs={"lr": 1e-2},
    epochs=15,
    batch_size=128,
)

# %%
# The search
# ----------
# Each λ costs five trainings, run two at a time (this machine's cores). Each
# worker runs torch on one thread: two workers already use both cores, and a worker
# forked from a process whose thread pool is running must not use that pool.
with ProcessPoolExecutor(max_workers=2, initializer=torch.set_num_threads, initargs=(1,)) as pool:
    objective = l2optim.kfold_objective(trainer, len(y), folds=5, executor=pool)
    search = l2optim.select_lambda(
        objective, bounds=(1e-3, 30.0), n_grid=5, xtol=0.25, progress=False
    )
print(
    f"select_lambda: lambda_min={search.lambda_min:.4g} lambda_1se={search.lambda_1se:.4g} "
    f"evaluations={len(search.evaluations)}"
)

# %%
# The CV curve
# ------------
# ``search.plot()`` draws the mean validation loss with one standard error either
# side at every λ the search evaluated, and marks λ_min and λ_1se.
ax = search.plot()
ax.set_title("5-fold CV of an MLP trained with AdamW")
plt.show()

# %%
# With decoupled decay the shrinkage per step is lr·λ (torch's convention), so the
# λ found here belongs to this optimizer and this learning rate;
# :mod:`l2optim.conversions` translates between conventions.
best = min(search.evaluations, key=lambda e: e.mean)
print(f"best evaluation: lam={best.lam:.4g} mean={best.mean:.4f} se={best.se:.4f}")
