r"""
Coupled vs decoupled weight decay for SGD, Adam and RMSprop
===========================================================

The same strength λ means different things in the two forms. We fit a linear model
to the diabetes data (Efron, Hastie, Johnstone & Tibshirani, 2004, *Least Angle
Regression*; the copy scikit-learn distributes under BSD-3-Clause, shipped as
:func:`l2optim.data.load_diabetes`) by full-batch training with each optimizer in
both forms, λ = 0.5, and follow the training loss and the weight norm.

Coupled L2 adds λθ to the gradient, so every coupled run converges to ridge
regression,

.. math::

    w^\star = \left(X^\top X/n + \lambda I\right)^{-1} X^\top y / n .

Decoupled decay shrinks θ outside the optimizer's preconditioning. For SGD with
momentum μ (no dampening) the fixed point is ridge with (1 − μ)λ; for Adam, and for
RMSprop without momentum and not centred as here, it is the least-squares solution
inside the box :math:`\lVert w\rVert_\infty \le 1/\lambda` (see
:doc:`/coupled_vs_decoupled` for RMSprop's other settings) — here the box is wide and
holds the least-squares solution, so decoupled Adam and RMSprop head for ordinary least
squares: barely regularised.
"""

# %%
# Data: ten standardised features, standardised target, 442 patients
# -------------------------------------------------------------------
import matplotlib.pyplot as plt
import numpy as np
import torch

import l2optim

X, y, feature_names = l2optim.data.load_diabetes()
X = (X - X.mean(0)) / X.std(0)
y = (y - y.mean()) / y.std()
n = len(y)
WEIGHT_DECAY = 0.5
MOMENTUM = 0.9
STEPS = 1500

ridge = np.linalg.solve(X.T @ X / n + WEIGHT_DECAY * np.eye(X.shape[1]), X.T @ y / n)
ridge_for_sgdw = np.linalg.solve(
    X.T @ X / n + (1 - MOMENTUM) * WEIGHT_DECAY * np.eye(X.shape[1]), X.T @ y / n
)
least_squares = np.linalg.lstsq(X, y, rcond=None)[0]
print(
    f"reference: ridge_norm={np.linalg.norm(ridge):.4f} "
    f"least_squares_norm={np.linalg.norm(least_squares):.4f} "
    f"least_squares_max_abs={np.abs(least_squares).max():.4f} box={1 / WEIGHT_DECAY:g}"
)


# %%
# Training
# --------
# Full batch, the loss :math:`\frac{1}{2n}\lVert Xw - y\rVert^2` (the data are
# centred, so no intercept), a cosine learning-rate schedule so that the adaptive
# methods settle instead of hovering at a distance set by the learning rate.
def train(optimizer_class, decoupled: bool, **kwargs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loss and weight norm per step, and the final weights."""
    inputs, targets = torch.as_tensor(X), torch.as_tensor(y)
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    optimizer = optimizer_class(
        [w], weight_decay=WEIGHT_DECAY, decoupled_weight_decay=decoupled, **kwargs
    )
    schedule = l2optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=STEPS, eta_min=kwargs["lr"] / 100
    )
    losses, norms = [], []
    for _ in range(STEPS):
        loss = 0.5 * (inputs @ w - targets).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        norms.append(w.norm().item())
    return np.array(losses), np.array(norms), w.detach().numpy()


optimizers = {
    "SGD": (l2optim.SGD, {"lr": 0.1, "momentum": MOMENTUM}),
    "Adam": (l2optim.Adam, {"lr": 0.05}),
    "RMSprop": (l2optim.RMSprop, {"lr": 0.01}),
}
runs = {
    (name, form): train(cls, form == "decoupled", **kwargs)
    for name, (cls, kwargs) in optimizers.items()
    for form in ("coupled", "decoupled")
}
for (name, form), (_, norms, w) in runs.items():
    print(
        f"{name} {form}: weight_norm={norms[-1]:.4f} "
        f"distance_to_ridge={np.linalg.norm(w - ridge):.4f} "
        f"distance_to_ridge_for_sgdw={np.linalg.norm(w - ridge_for_sgdw):.4f} "
        f"distance_to_least_squares={np.linalg.norm(w - least_squares):.4f}"
    )

# %%
# Loss curves and weight norms
# ----------------------------
# Solid: coupled; dashed: decoupled. The dotted lines are the norms of ridge at λ
# and of ordinary least squares.
fig, axes = plt.subplots(2, 3, figsize=(12, 6), sharex=True)
for column, name in enumerate(optimizers):
    for form, style in (("coupled", "-"), ("decoupled", "--")):
        losses, norms, _ = runs[(name, form)]
        axes[0, column].loglog(np.arange(1, STEPS + 1), losses, style, label=form)
        axes[1, column].semilogx(np.arange(1, STEPS + 1), norms, style, label=form)
    axes[1, column].axhline(np.linalg.norm(ridge), color="grey", ls=":", label="ridge at λ")
    axes[1, column].axhline(
        np.linalg.norm(least_squares), color="black", ls=":", label="least squares"
    )
    axes[0, column].set_title(name)
    axes[1, column].set_xlabel("step")
axes[0, 0].set_ylabel("training loss")
axes[1, 0].set_ylabel("‖w‖₂")
axes[0, 0].legend()
axes[1, 0].legend(fontsize=8)
fig.tight_layout()
plt.show()

# %%
# Coupled SGD, Adam and RMSprop all reach ridge (distance 0 in the printout).
# Decoupled SGD reaches ridge at (1 − μ)λ, a tenth of the penalty. Decoupled Adam
# and RMSprop leave ridge behind and move towards least squares, which their box
# :math:`\lVert w\rVert_\infty \le 2` contains; convergence there is slow (Adam
# is still on its way after 1500 steps). The same λ does not regularise the two
# forms alike: choose it for the form you train with (:doc:`/choosing_lambda`).
