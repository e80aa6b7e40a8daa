r"""
decay_groups: what decaying biases does
=======================================

``SGD(model.parameters(), weight_decay=λ)`` decays every parameter: the weights,
but also the biases (and the gains and shifts of normalisation layers). Decaying a
weight limits how strongly the model reacts to its inputs; decaying a bias pulls
the model's *offset* towards zero, which no prior asks for.
:func:`l2optim.decay_groups` puts the weights in one param group with strength λ
and the biases and normalisation parameters in another with 0.

A linear model shows the cost exactly. Full batch, coupled SGD converges to the
minimiser of :math:`\frac{1}{2n}\lVert Xw + b - y\rVert^2 + \frac{\lambda}{2}\lVert w\rVert^2`
— plus :math:`\frac{\lambda}{2}b^2` when the bias decays too — and both have closed
forms. The data are the diabetes data (Efron et al., 2004; the scikit-learn copy,
BSD-3-Clause, shipped with l2optim), the target in hundreds (mean about 1.5), so
the bias has work to do.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
import torch

import l2optim

X, y, _ = l2optim.data.load_diabetes()
y = y / 100
order = np.random.default_rng(0).permutation(len(y))
train, test = order[:342], order[342:]
# Standardised with the training statistics: the training features are centred.
X = (X - X[train].mean(0)) / X[train].std(0)
WEIGHT_DECAY, LR, MOMENTUM, STEPS = 0.5, 0.1, 0.9, 600


def closed_form(decay_bias: bool) -> np.ndarray:
    """(w, b) from the normal equations, the bias penalised or not."""
    design = np.column_stack([X[train], np.ones(len(train))])
    penalty = np.ones(design.shape[1])
    penalty[-1] = 1.0 if decay_bias else 0.0
    n = len(train)
    return np.linalg.solve(
        design.T @ design / n + WEIGHT_DECAY * np.diag(penalty), design.T @ y[train] / n
    )


def test_mse(w: np.ndarray, b: float) -> float:
    return float(np.mean((X[test] @ w + b - y[test]) ** 2))


def train_linear(grouped: bool) -> tuple[np.ndarray, np.ndarray]:
    """Full-batch coupled SGD; the bias and the test MSE at every step."""
    torch.manual_seed(0)
    model = torch.nn.Linear(10, 1, dtype=torch.float64)
    inputs, targets = torch.as_tensor(X[train]), torch.as_tensor(y[train])
    params = l2optim.decay_groups(model, WEIGHT_DECAY) if grouped else model.parameters()
    optimizer = l2optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    biases, errors = [], []
    for _ in range(STEPS):
        loss = 0.5 * (model(inputs).squeeze(1) - targets).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        w, b = model.weight.detach().numpy()[0], model.bias.item()
        biases.append(b)
        errors.append(test_mse(w, b))
    return np.array(biases), np.array(errors)


runs = {
    "every parameter decayed": (train_linear(grouped=False), closed_form(decay_bias=True)),
    "decay_groups": (train_linear(grouped=True), closed_form(decay_bias=False)),
}
for name, ((biases, errors), solution) in runs.items():
    print(
        f"{name}: bias={biases[-1]:.6f} closed_form_bias={solution[-1]:.6f} "
        f"test_mse={errors[-1]:.6f} closed_form_test_mse={test_mse(solution[:-1], solution[-1]):.6f}"
    )
print(f"mean training target: {y[train].mean():.6f}")

# %%
# Over training
# -------------
# Dotted lines: the closed forms each run converges to.
fig, (ax_bias, ax_error) = plt.subplots(1, 2, figsize=(10, 3.8))
for colour, (name, ((biases, errors), solution)) in zip(("C0", "C1"), runs.items(), strict=True):
    ax_bias.plot(biases, color=colour, label=name)
    ax_bias.axhline(solution[-1], color=colour, ls=":")
    ax_error.semilogy(errors, color=colour, label=name)
    ax_error.axhline(test_mse(solution[:-1], solution[-1]), color=colour, ls=":")
ax_bias.axhline(y[train].mean(), color="grey", ls="--", label="mean training target")
ax_bias.set(xlabel="step", ylabel="bias", title="Output bias")
ax_error.set(xlabel="step", ylabel="test MSE", title="Test mean squared error")
ax_bias.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %%
# Decaying the bias leaves it at :math:`\bar y/(1+\lambda)` instead of
# :math:`\bar y` (the training features are centred), a third short here, and every
# prediction pays for it. With ``decay_groups`` the bias is the mean target and λ
# acts on the weights alone.
