r"""
Decoupled scaling under a schedule: ``"lr"`` vs ``"schedule"``
==============================================================

Decoupled decay shrinks each weight by :math:`\theta \leftarrow \theta(1 - s_t\lambda)`
every step. The scaling :math:`s_t` is a per-group choice:

* ``weight_decay_scaling="lr"`` (torch's AdamW): :math:`s_t = \eta_t`, the learning
  rate itself. Retune the base learning rate and the decay changes with it.
* ``weight_decay_scaling="schedule"`` (Loshchilov & Hutter's :math:`\eta_t`):
  :math:`s_t = \eta_t/\eta_0`, the schedule's multiplier only. The decay still
  follows the schedule, but does not move when the base rate :math:`\eta_0` is
  retuned.

We measure the total shrinkage :math:`\prod_t (1 - s_t\lambda)` that AdamW applies
over a cosine schedule with a *probe*: a parameter whose gradient is always zero,
so that only the decay moves it. Alongside, the same AdamW fits a linear model to
the diabetes data (Efron et al., 2004; the scikit-learn copy, BSD-3-Clause,
shipped with l2optim) at each base rate. The two λ are chosen to agree at
:math:`\eta_0 = 10^{-2}`: :math:`\lambda_{lr} = 1` and
:math:`\lambda_{schedule} = \eta_0\lambda_{lr} = 10^{-2}`.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

import l2optim

X, y, _ = l2optim.data.load_diabetes()
y = (y - y.mean()) / y.std()
order = np.random.default_rng(0).permutation(len(y))
train, test = order[:342], order[342:]
X = (X - X[train].mean(0)) / X[train].std(0)
STEPS = 400
BASE_LRS = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
WEIGHT_DECAY = {"lr": 1.0, "schedule": 1e-2}


def fit(scaling: str, base_lr: float) -> tuple[float, float]:
    """Total shrinkage measured by the probe, and the test MSE, after a cosine schedule."""
    torch.manual_seed(0)
    model = torch.nn.Linear(X.shape[1], 1, dtype=torch.float64)
    probe = torch.ones(1, dtype=torch.float64, requires_grad=True)
    groups = l2optim.decay_groups(model, WEIGHT_DECAY[scaling])
    groups[0]["params"].append(probe)  # decayed like the weights
    optimizer = l2optim.AdamW(groups, lr=base_lr, weight_decay_scaling=scaling)
    schedule = l2optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=STEPS)
    inputs, targets = torch.as_tensor(X[train]), torch.as_tensor(y[train])
    for _ in range(STEPS):
        loss = 0.5 * (model(inputs).squeeze(1) - targets).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        probe.grad = torch.zeros_like(probe)  # a gradient of zero: Adam's step is zero
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        prediction = model(torch.as_tensor(X[test])).squeeze(1)
        error = (prediction - torch.as_tensor(y[test])).pow(2).mean().item()
    return probe.item(), error


results = {scaling: np.array([fit(scaling, lr) for lr in BASE_LRS]) for scaling in WEIGHT_DECAY}
for scaling, rows in results.items():
    for lr, (shrinkage, error) in zip(BASE_LRS, rows, strict=True):
        print(
            f"scaling={scaling} weight_decay={WEIGHT_DECAY[scaling]:g} base_lr={lr:g}: "
            f"total_shrinkage={shrinkage:.6g} test_mse={error:.4f}"
        )

# %%
# The picture
# -----------
fig, (ax_shrink, ax_error) = plt.subplots(1, 2, figsize=(10, 3.8))
for scaling, rows in results.items():
    label = f'"{scaling}", λ = {WEIGHT_DECAY[scaling]:g}'
    ax_shrink.loglog(BASE_LRS, rows[:, 0], "o-", label=label)
    ax_error.semilogx(BASE_LRS, rows[:, 1], "o-", label=label)
ax_shrink.set(
    xlabel="base learning rate η₀", ylabel="∏(1 − s_t λ)", title="Total decoupled shrinkage"
)
ax_error.set(xlabel="base learning rate η₀", ylabel="test MSE", title="Linear model, diabetes data")
ax_shrink.legend()
fig.tight_layout()
plt.show()

# %%
# With ``"schedule"`` the shrinkage over training is the same at every base rate:
# λ keeps its meaning, as a shrinkage over the run, while η₀ is tuned.
# With ``"lr"`` it falls by orders of magnitude as η₀ grows, so a λ tuned at one
# learning rate is a different regulariser at another. (The ``"lr"`` convention has
# its own invariance: full batch, AdamW's fixed point is the box ‖θ‖∞ ≤ 1/λ, in
# which η₀ does not appear — see :doc:`ridge_vs_box`.)
