r"""
Linear regression with an L2 penalty, checked against the closed form
=====================================================================

We fit :math:`y = 2x + 1 + \varepsilon` with a penalty on the slope only, by
full-batch gradient descent with momentum, three ways:

* coupled L2 (``l2optim.SGD``, the default form), strength :math:`\lambda`;
* decoupled weight decay (``l2optim.SGDW``) with the *same* :math:`\lambda`;
* decoupled weight decay with :math:`\lambda/(1-\mu)`.

The loss is

.. math::

    \mathcal{L}(w, b) = \frac{1}{2n}\sum_{i=1}^{n} (w x_i + b - y_i)^2
    + \frac{\lambda}{2} w^2 ,

whose minimiser is ridge regression with an unpenalised intercept. Centring
:math:`x` and :math:`y` gives it in closed form:

.. math::

    w^\star = \frac{\sum_i (x_i-\bar x)(y_i-\bar y)}{\sum_i (x_i-\bar x)^2 + n\lambda},
    \qquad b^\star = \bar y - w^\star \bar x .

Coupled SGD converges to :math:`(w^\star, b^\star)`. Decoupled SGD with momentum
:math:`\mu` (no dampening) converges to the ridge solution for the strength
:math:`(1-\mu)\lambda`, so it needs :math:`\lambda/(1-\mu)` to land on the same
point.

The data are synthetic: ``numpy.random.default_rng(seed)`` draws
:math:`x \sim U(-1, 1)` and then :math:`\varepsilon \sim N(0, \sigma^2)` for
``n_train + n_test`` points; the first ``n_train`` are the training set.
"""

# %%
# The data
# --------
import matplotlib.pyplot as plt
import numpy as np
import torch

import l2optim

SEED = 0
N_TRAIN = 30
N_TEST = 1000
NOISE = 0.5
WEIGHT_DECAY = 0.1  # λ
MOMENTUM = 0.9  # μ
LR = 0.5
STEPS = 600

rng = np.random.default_rng(SEED)
x = rng.uniform(-1.0, 1.0, size=N_TRAIN + N_TEST)
y = 2.0 * x + 1.0 + NOISE * rng.standard_normal(N_TRAIN + N_TEST)
x_train, y_train = x[:N_TRAIN], y[:N_TRAIN]
x_test, y_test = x[N_TRAIN:], y[N_TRAIN:]
print(f"data: n_train={N_TRAIN} n_test={N_TEST} noise={NOISE} seed={SEED}")
print(f"settings: weight_decay={WEIGHT_DECAY} momentum={MOMENTUM} lr={LR} steps={STEPS}")


# %%
# The closed form
# ---------------
# Centring removes the intercept from the penalised problem; the slope is then a
# one-dimensional ridge regression.
def ridge_line(x: np.ndarray, y: np.ndarray, weight_decay: float) -> tuple[float, float]:
    """Slope and intercept minimising (1/2n)·Σ(w·x + b − y)² + (λ/2)·w²."""
    xc, yc = x - x.mean(), y - y.mean()
    w = float(xc @ yc / (xc @ xc + len(x) * weight_decay))
    return w, float(y.mean() - w * x.mean())


def mean_squared_error(w: float, b: float, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((w * x + b - y) ** 2))


ridge = ridge_line(x_train, y_train, WEIGHT_DECAY)
ridge_decoupled = ridge_line(x_train, y_train, (1 - MOMENTUM) * WEIGHT_DECAY)


# %%
# Training with l2optim
# ---------------------
# ``decay_groups`` puts the weight in a decayed group and the bias in a group with
# λ = 0, so the bias is not penalised, as in the closed form.
def fit(optimizer_class: type, weight_decay: float) -> np.ndarray:
    """Full-batch training; returns the (w, b) path, one row per step."""
    torch.manual_seed(SEED)
    model = torch.nn.Linear(1, 1, dtype=torch.float64)
    inputs = torch.as_tensor(x_train).unsqueeze(1)
    targets = torch.as_tensor(y_train)
    optimizer = optimizer_class(l2optim.decay_groups(model, weight_decay), lr=LR, momentum=MOMENTUM)
    path = []
    for _ in range(STEPS):
        # Half the mean squared error: the data term of the loss above. The penalty
        # is the optimizer's job.
        loss = 0.5 * (model(inputs).squeeze(1) - targets).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        path.append([model.weight.item(), model.bias.item()])
    return np.array(path)


runs = {
    f"coupled SGD, weight_decay={WEIGHT_DECAY:g}": (
        fit(l2optim.SGD, WEIGHT_DECAY),
        ridge,
    ),
    f"decoupled SGDW, weight_decay={WEIGHT_DECAY:g}": (
        fit(l2optim.SGDW, WEIGHT_DECAY),
        ridge_decoupled,
    ),
    f"decoupled SGDW, weight_decay={WEIGHT_DECAY / (1 - MOMENTUM):g}": (
        fit(l2optim.SGDW, WEIGHT_DECAY / (1 - MOMENTUM)),
        ridge,
    ),
}

# %%
# Results
# -------
# Each line gives the learned slope and intercept, the mean squared error on the
# training and test sets, and the distance to the closed form it should reach.
w, b = ridge
print(
    f"closed-form ridge, weight_decay={WEIGHT_DECAY:g}: w={w:.6f} b={b:.6f} "
    f"train_mse={mean_squared_error(w, b, x_train, y_train):.6f} "
    f"test_mse={mean_squared_error(w, b, x_test, y_test):.6f}"
)
for name, (path, target) in runs.items():
    w, b = path[-1]
    gap = float(np.hypot(w - target[0], b - target[1]))
    print(
        f"{name}: w={w:.6f} b={b:.6f} "
        f"train_mse={mean_squared_error(w, b, x_train, y_train):.6f} "
        f"test_mse={mean_squared_error(w, b, x_test, y_test):.6f} "
        f"distance_to_closed_form={gap:.2e}"
    )

# %%
# Coupled SGD lands on ridge. Decoupled SGD with the same λ shrinks less — its
# fixed point is ridge with (1 − μ)·λ — and decoupled SGD with λ/(1 − μ) lands on
# ridge again, by a different path.
fig, (ax_fit, ax_path) = plt.subplots(1, 2, figsize=(10, 4))
grid = np.linspace(-1, 1, 2)
ax_fit.scatter(x_train, y_train, s=14, color="black", label="training data")
ax_fit.plot(grid, 2 * grid + 1, color="grey", ls=":", label="truth: y = 2x + 1")
ax_fit.plot(
    grid, ridge[0] * grid + ridge[1], color="C0", lw=3, alpha=0.5, label="closed-form ridge"
)
for colour, (name, (path, _)) in zip(("C1", "C2", "C3"), runs.items(), strict=True):
    ax_fit.plot(grid, path[-1, 0] * grid + path[-1, 1], color=colour, ls="--", label=name)
    ax_path.semilogy(np.hypot(*(path - ridge).T), color=colour, label=name)
ax_fit.set(xlabel="x", ylabel="y", title="Fitted lines")
ax_fit.legend(fontsize=7)
ax_path.set(
    xlabel="step",
    ylabel="distance to closed-form ridge (w, b)",
    title="Convergence",
)
ax_path.legend(fontsize=7)
fig.tight_layout()
plt.show()
