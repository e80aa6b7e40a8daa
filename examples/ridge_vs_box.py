r"""
Where the forms part ways: ridge vs AdamW's box
===============================================

Full batch, coupled Adam converges to ridge regression; decoupled Adam (AdamW)
does not. At a fixed point of AdamW the decay :math:`\lambda\theta` must balance
Adam's normalised step, whose entries are at most 1 in size, so the limit is the
least-squares solution constrained to the box
:math:`\lVert\theta\rVert_\infty \le 1/\lambda` (Xie & Li, ICML 2024):

.. math::

    \text{coupled:}\ \ \min_\theta \tfrac{1}{2n}\lVert X\theta - y\rVert^2
    + \tfrac{\lambda}{2}\lVert\theta\rVert^2,
    \qquad
    \text{decoupled:}\ \ \min_{\lVert\theta\rVert_\infty \le 1/\lambda}
    \tfrac{1}{2n}\lVert X\theta - y\rVert^2 .

Two features make both solutions drawable. The box solution comes from
:func:`scipy.optimize.lsq_linear` with bounds, the ridge solution from the normal
equations; the two optimizers are run from zero and their paths drawn.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch
from scipy.optimize import lsq_linear

import l2optim

rng = np.random.default_rng(0)
n, weight_decay, steps = 200, 0.6, 2500
X = rng.multivariate_normal([0, 0], [[1.0, 0.6], [0.6, 1.0]], size=n)
y = X @ np.array([2.5, -0.5]) + 0.3 * rng.standard_normal(n)

least_squares = np.linalg.lstsq(X, y, rcond=None)[0]
ridge = np.linalg.solve(X.T @ X / n + weight_decay * np.eye(2), X.T @ y / n)
box = lsq_linear(X, y, bounds=(-1 / weight_decay, 1 / weight_decay), tol=1e-12).x
print(f"least squares: w1={least_squares[0]:.4f} w2={least_squares[1]:.4f}")
print(f"ridge: w1={ridge[0]:.4f} w2={ridge[1]:.4f}")
print(f"box: w1={box[0]:.4f} w2={box[1]:.4f} bound={1 / weight_decay:.4f}")


# %%
# Full-batch Adam in both forms, with a cosine schedule so that the last steps are
# small enough to settle. β₂ = 0.99 (not 0.999) shortens the memory of the second
# moment, so AdamW's slow approach to the box takes a few thousand steps, not tens.
def adam_path(decoupled: bool) -> np.ndarray:
    inputs, targets = torch.as_tensor(X), torch.as_tensor(y)
    theta = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    optimizer = l2optim.Adam(
        [theta],
        lr=0.05,
        betas=(0.9, 0.99),
        weight_decay=weight_decay,
        decoupled_weight_decay=decoupled,
    )
    schedule = l2optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=1e-4)
    path = [theta.detach().clone().numpy()]
    for _ in range(steps):
        loss = 0.5 * (inputs @ theta - targets).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        path.append(theta.detach().clone().numpy())
    return np.array(path)


coupled, decoupled = adam_path(False), adam_path(True)
for name, path in (("Adam", coupled), ("AdamW", decoupled)):
    w1, w2 = path[-1]
    print(
        f"{name}: w1={w1:.4f} w2={w2:.4f} "
        f"distance_to_ridge={np.linalg.norm(path[-1] - ridge):.4f} "
        f"distance_to_box={np.linalg.norm(path[-1] - box):.4f}"
    )

# %%
# The picture
# -----------
# Contours of the least-squares loss, the ridge path as λ varies (grey), the box
# :math:`\lVert\theta\rVert_\infty \le 1/\lambda`, and the two optimizers' paths.
grid1, grid2 = np.meshgrid(np.linspace(-0.5, 3.0, 200), np.linspace(-2.0, 1.5, 200))
thetas = np.stack([grid1.ravel(), grid2.ravel()])
loss = (0.5 * ((X @ thetas - y[:, None]) ** 2).mean(0)).reshape(grid1.shape)
ridge_path = np.array(
    [np.linalg.solve(X.T @ X / n + lam * np.eye(2), X.T @ y / n) for lam in np.logspace(-3, 2, 100)]
)
bound = 1 / weight_decay

fig, ax = plt.subplots(figsize=(6.5, 6))
ax.contour(grid1, grid2, loss, levels=np.geomspace(loss.min() + 1e-3, loss.max(), 15), colors="0.8")
ax.plot(ridge_path[:, 0], ridge_path[:, 1], color="grey", lw=1, label="ridge path over λ")
ax.add_patch(
    plt.Rectangle((-bound, -bound), 2 * bound, 2 * bound, fill=False, ls="--", label="‖θ‖∞ ≤ 1/λ")
)
ax.plot(*coupled.T, color="C0", label="coupled Adam")
ax.plot(*decoupled.T, color="C1", label="decoupled Adam (AdamW)")
ax.plot(*least_squares, "k*", ms=12, label="least squares")
ax.plot(*ridge, "o", color="C0", ms=9, mfc="none", mew=2, label="ridge at λ")
ax.plot(*box, "s", color="C1", ms=9, mfc="none", mew=2, label="box-constrained least squares")
ax.set(xlim=(-0.5, 3.0), ylim=(-2.0, 1.5), xlabel="θ₁", ylabel="θ₂", aspect="equal")
ax.set_title(f"λ = {weight_decay}")
ax.legend(fontsize=8, loc="lower right")
fig.tight_layout()
plt.show()

# %%
# Coupled Adam ends on ridge: both coordinates shrink. AdamW ends on the box
# solution: the first coordinate is clipped to 1/λ, and the second moves to make
# up for it along the correlated direction — a different estimator, not a
# different route to the same one.
