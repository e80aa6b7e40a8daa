r"""
select_lambda: λ for a small MLP, folds on worker processes
===========================================================

Ridge has a closed-form CV curve; a neural network does not. For any model you can
train, :func:`l2optim.select_lambda` runs the same search — a log grid, then
Brent's method on :math:`\ln\lambda` — on a k-fold objective whose folds run in
parallel.

Here a one-hidden-layer MLP is trained with :class:`l2optim.AdamW` (decoupled
decay; the biases left undecayed by :func:`l2optim.decay_groups`) on the diabetes
data (Efron et al., 2004; the scikit-learn copy, BSD-3-Clause, shipped with
l2optim), five folds per λ, two at a time on worker processes.
"""

# %%
import matplotlib.pyplot as plt
import torch

import l2optim

X, y, _ = l2optim.data.load_diabetes()
X, y = X.astype("float32"), y.astype("float32")

# %%
# The model and the fold trainer
# ------------------------------
# The model is a template: every fold and every λ trains a copy of it, from its
# initial weights. ``standardize=True`` scales the ten features and the target on
# each training fold only, so the scores are mean squared errors of disease
# progression in its own units.
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
trainer = l2optim.FoldTrainer(
    model,
    X,
    y,
    optimizer=l2optim.AdamW,
    optimizer_kwargs={"lr": 1e-2},
    epochs=15,
    batch_size=128,
    standardize=True,
)

# %%
# The search
# ----------
# Each λ costs five trainings, run two at a time (this machine's cores) in two
# worker processes with one torch thread each. The workers are fresh interpreters
# that import this script, so the search runs only in the main one. No bounds are
# given: with decoupled decay at lr = 0.01 the trainer proposes λ up to 0.5/lr = 50
# (λ·lr < 1 keeps the weights' sign), down to where the decay barely acts over
# the 45 steps of one training. ``refit=True`` trains the final model on every row
# at λ_min.
if __name__ == "__main__":
    with l2optim.kfold_objective(trainer, len(y), folds=5, workers=2) as objective:
        search = l2optim.select_lambda(objective, n_grid=5, xtol=0.25, refit=True, progress=False)
    print(
        f"select_lambda: lambda_min={search.lambda_min:.4g} lambda_1se={search.lambda_1se:.4g} "
        f"evaluations={len(search.evaluations)} lo={search.bounds[0]:.4g} hi={search.bounds[1]:.4g}"
    )

    # The CV curve: ``search.plot()`` draws the mean validation loss with one
    # standard error either side at every λ evaluated, and marks λ_min and λ_1se.
    ax = search.plot()
    ax.set_title("5-fold CV of an MLP trained with AdamW")
    ax.set_ylabel("validation MSE of disease progression")
    plt.show()

    # With decoupled decay the shrinkage per step is lr·λ (torch's convention), so the
    # λ found here belongs to this optimizer and this learning rate;
    # :mod:`l2optim.conversions` translates between conventions.
    best = min(search.evaluations, key=lambda e: e.mean)
    print(f"best evaluation: lam={best.lam:.6g} mean={best.mean:.6g} se={best.se:.4g}")
    with torch.no_grad():
        fitted = search.model(torch.as_tensor(X))
    print(f"refit: train_mse={float(((fitted - torch.as_tensor(y)) ** 2).mean()):.6g}")
