r"""
Plain, cautious and corrected decay on one network
==================================================

Three decoupled rules at the same λ, on the same MLP, data, seeds and schedule:

* **plain**: AdamW's :math:`\theta \leftarrow \theta(1 - \eta_t\lambda)` before each step;
* **cautious** (``cautious_weight_decay=True``; Chen et al. 2025): the same shrink, but only
  on the coordinates the step moves towards zero;
* **corrected** (``weight_decay_scaling="corrected"``; Defazio 2025): the shrink falls with
  :math:`\eta_t^2/\eta_{\max}`, so it fades faster than the lr as the schedule anneals.

An MLP with LayerNorm (10-64-64-1) fits 342 rows of the diabetes data (Efron et al., 2004;
shipped with l2optim) with AdamW under a linear warm-up to :math:`\eta_{\max} = 10^{-2}` and a
cosine decay; 100 rows are a test set. Each rule runs at four λ and three seeds. A *probe*,
a parameter whose gradient is always zero, measures the total shrinkage
:math:`\prod_t (1 - s_t\lambda)` each rule applied (cautious decay shrinks it every step:
a zero step agrees with any sign). The gradient norm of the last epoch is recorded too:
corrected decay was proposed against its rise at the end of training.
"""

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
import torch

import l2optim

torch.set_num_threads(1)
X, y, _ = l2optim.data.load_diabetes()
order = np.random.default_rng(0).permutation(len(y))
train, test = order[:342], order[342:]
X = ((X - X[train].mean(0)) / X[train].std(0)).astype(np.float32)
y = ((y - y[train].mean()) / y[train].std()).astype(np.float32)
EPOCHS, BATCH, PEAK_LR, WARMUP = 40, 32, 1e-2, 0.1
LAMBDAS = (0.0, 4.0, 16.0, 64.0)
SEEDS = range(3)
RULES = {
    "plain": {},
    "cautious": {"cautious_weight_decay": True},
    "corrected": {"weight_decay_scaling": "corrected"},
}


def lr_factor(step: int, total: int) -> float:
    """Linear warm-up over the first WARMUP of the steps, then a cosine to zero."""
    warm = max(1, int(WARMUP * total))
    if step < warm:
        return (step + 1) / warm
    return 0.5 * (1 + math.cos(math.pi * (step - warm) / (total - warm)))


def fit(rule: str, weight_decay: float, seed: int) -> dict[str, float]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(10, 64), torch.nn.LayerNorm(64), torch.nn.GELU(),
        torch.nn.Linear(64, 64), torch.nn.LayerNorm(64), torch.nn.GELU(),
        torch.nn.Linear(64, 1),
    )
    probe = torch.nn.Parameter(torch.ones(1))
    groups = l2optim.decay_groups(model, weight_decay)
    groups[0]["params"].append(probe)
    optimizer = l2optim.AdamW(groups, lr=PEAK_LR, **RULES[rule])  # lr_ref = the peak
    steps_per_epoch = math.ceil(len(train) / BATCH)
    total = EPOCHS * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total))
    inputs, targets = torch.as_tensor(X[train]), torch.as_tensor(y[train])
    generator = torch.Generator().manual_seed(seed)
    grad_norms = []
    for epoch in range(EPOCHS):
        for batch in torch.randperm(len(train), generator=generator).split(BATCH):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(inputs[batch]).squeeze(1), targets[batch])
            loss.backward()
            probe.grad = torch.zeros_like(probe)
            if epoch == EPOCHS - 1:
                grad_norms.append(
                    math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))
                )
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        prediction = model(torch.as_tensor(X[test])).squeeze(1)
        error = torch.nn.functional.mse_loss(prediction, torch.as_tensor(y[test])).item()
    return {"test_mse": error, "shrinkage": probe.item(), "last_grad_norm": np.mean(grad_norms)}


results = {
    (rule, lam): [fit(rule, lam, seed) for seed in SEEDS] for rule in RULES for lam in LAMBDAS
}
for (rule, lam), runs in results.items():
    print(
        f"rule={rule} lam={lam:g} test_mse={np.mean([r['test_mse'] for r in runs]):.4f} "
        f"test_mse_se={np.std([r['test_mse'] for r in runs], ddof=1) / math.sqrt(len(runs)):.4f} "
        f"shrinkage={runs[0]['shrinkage']:.6g} "
        f"last_grad_norm={np.mean([r['last_grad_norm'] for r in runs]):.4f}"
    )

# %%
# The picture
# -----------
fig, (ax_error, ax_grad) = plt.subplots(1, 2, figsize=(10, 3.8))
for rule in RULES:
    means = [np.mean([r["test_mse"] for r in results[rule, lam]]) for lam in LAMBDAS]
    norms = [np.mean([r["last_grad_norm"] for r in results[rule, lam]]) for lam in LAMBDAS]
    ax_error.plot(LAMBDAS, means, "o-", label=rule)
    ax_grad.plot(LAMBDAS, norms, "o-", label=rule)
ax_error.set(xlabel="λ", ylabel="test MSE (mean of 3 seeds)", title="Diabetes MLP")
ax_grad.set(xlabel="λ", ylabel="gradient norm, last epoch", title="End of training")
ax_error.legend()
fig.tight_layout()
plt.show()

# %%
# At λ = 0 the three rules are the same optimizer, and the rows agree. At the same λ,
# corrected decay shrinks far less in total (the probe), as the square of an annealed lr
# is small for most of the run, so its λ is not the plain rule's: compare each rule at its
# own best λ. The measured table, and what it does and does not show, is on the
# documentation's "Decay rules" page.
