"""λ in one training run, per layer, by the Laplace evidence (a prototype, measured).

Run: ``python benchmarks/selection/marglik.py --problems regression,wide_regression
--splits 10 --cache FILE`` (the ``--cache`` file of ``own_loops.py``, which holds full CV's
choice and its test loss per split; without it full CV runs here). Nothing is asserted.

Coupled L2 is a Gaussian prior: minimising the mean squared error plus (λ/2)·‖θ‖² is
maximising the posterior of a model with noise precision β and prior precision α when
λ = 2α/(β·N). MacKay's evidence fixed point (MacKay 1992; the layer-wise prior precisions
of Immer et al., ICML 2021, with a diagonal generalised Gauss-Newton in place of their
Kronecker factors) chooses one α per layer from the training rows alone:

    γ_g = Σ_{j∈g} β·h_j / (β·h_j + α_g),   α_g ← γ_g / ‖θ_g‖²,
    β ← (N − γ) / Σ_i (y_i − f_i)²,

h_j = Σ_i (∂f_i/∂θ_j)² the diagonal GGN, γ the well-determined parameters (the undecayed
biases and norms count fully). The final model trains once on all training rows with each
layer's weight matrix in its own param group; after a burn-in the updates run every few
epochs and set λ_g = 2α_g/(β·N) in the groups. Cost: the training run plus one pass of
per-row Jacobians per update (counted as one epoch of rows each).

The problems are ``own_loops.py``'s two regressions with their loops, schedules and
optimizers, the decay coupled (a Gaussian prior): ``regression`` trains with AdamW's
update and coupled L2 here (its full CV chose a decoupled λ; the comparison is of test
losses, the quantity a user keeps); ``wide_regression`` is coupled RMSprop as in
``own_loops.py``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap
from torch.utils.data import DataLoader, TensorDataset

import l2optim

sys.path.insert(0, os.path.dirname(__file__))
import own_loops  # noqa: E402
from _study import Cache  # noqa: E402

BURN_IN, EVERY = 0.25, 2  # first update after a quarter of the epochs, then every 2 epochs
MAX_CHANGE = 2.0  # λ moves at most by this factor per update
TRACE = os.environ.get("MARGLIK_TRACE") == "1"
NOISE = os.environ.get("MARGLIK_NOISE", "ml")


def layer_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """One group per weight matrix (its own λ), one undecayed group for the rest."""
    decayed, rest = l2optim.decay_groups(model, weight_decay)
    groups = [
        {"params": [p], "param_names": [name], "weight_decay": weight_decay}
        for p, name in zip(decayed["params"], decayed["param_names"], strict=True)
    ]
    return [*groups, rest]


def diagonal_ggn(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Σ_i (∂f_i/∂θ)² per parameter, for a model with one output per row."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def output(p, row):
        return functional_call(model, p, (row.unsqueeze(0),)).squeeze()

    jacobians = vmap(jacrev(output), in_dims=(None, 0))(params, x)
    return {k: j.pow(2).sum(0) for k, j in jacobians.items()}


def train_with_evidence(loop: own_loops.Loop, coupled_optimizer, lam0: float):
    """The final model on every training row, λ per layer from the evidence; its test loss,
    the λ it ended with and the cost in training runs."""
    torch.manual_seed(loop.seed)
    model = loop.model()
    groups = layer_groups(model, lam0)
    optimizer = coupled_optimizer(groups)
    loader = DataLoader(
        TensorDataset(loop.x, loop.y),
        batch_size=loop.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(loop.seed),
    )
    schedule = loop.schedule(optimizer, loop.epochs * len(loader))
    n = len(loop.y)
    alphas = [lam0 * n / 2] * (len(groups) - 1)  # β = 1 to start: λ = 2α/N
    beta, passes = 1.0, 0
    names = [g["param_names"][0] for g in groups[:-1]]
    for epoch in range(loop.epochs):
        model.train()
        for xb, yb in loader:
            optimizer.zero_grad()
            loop.loss(model(xb), yb).backward()
            optimizer.step()
            schedule.step()
        done = epoch + 1
        if done >= BURN_IN * loop.epochs and done % EVERY == 0 and done < loop.epochs:
            model.eval()
            h = diagonal_ggn(model, loop.x)
            passes += 1
            with torch.no_grad():
                residual = (model(loop.x).squeeze(-1) - loop.y).pow(2).sum().item()
            gammas = []
            named = dict(model.named_parameters())
            for i, name in enumerate(names):
                hb = beta * h[name]
                gamma = float((hb / (hb + alphas[i])).sum())
                norm = float(named[name].detach().pow(2).sum())
                alphas[i] = max(gamma, 1e-8) / max(norm, 1e-12)
                gammas.append(gamma)
            if NOISE == "mackay":
                free = sum(p.numel() for p in groups[-1]["params"])
                beta = max(n - sum(gammas) - free, 1.0) / max(residual, 1e-12)
            else:
                # A diagonal GGN counts more well-determined parameters than rows (γ > N
                # here: it ignores their correlations), which makes MacKay's β oscillate;
                # the maximum-likelihood noise of the training residuals instead.
                beta = n / max(residual, 1e-12)
            for group, alpha in zip(groups[:-1], alphas, strict=True):
                # Damped: θ is not the MAP of the current λ mid-training, and an undamped
                # fixed point runs away (a larger λ shrinks θ, which raises α).
                target = 2 * alpha / (beta * n)
                old = group["weight_decay"]
                group["weight_decay"] = min(max(target, old / MAX_CHANGE), old * MAX_CHANGE)
            if TRACE:
                print(f"    epoch {done}: gamma {[round(g, 1) for g in gammas]} beta {beta:.3g} "
                      f"lambda {[round(g['weight_decay'], 4) for g in groups[:-1]]}")
    model.eval()
    with torch.no_grad():
        test = float(loop.loss(model(loop.x_test), loop.y_test))
    lambdas = [g["weight_decay"] for g in groups[:-1]]
    return test, lambdas, 1 + passes / loop.epochs


OPTIMIZERS = {
    # AdamW's update with the decay coupled: a Gaussian prior.
    "regression": lambda groups: l2optim.AdamW(groups, lr=1e-2, decoupled_weight_decay=False),
    "wide_regression": lambda groups: l2optim.RMSprop(groups, lr=1e-3),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="regression,wide_regression")
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--first-split", type=int, default=0)
    parser.add_argument("--lam0", type=float, default=1e-2, help="λ before the first update")
    parser.add_argument("--cache", help="own_loops.py's cache of full CV")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cache = Cache(args.cache)
    for name in args.problems.split(","):
        excess, costs = [], []
        print(f"\n{name}: evidence λ per layer in one run, against full 5-fold CV's single λ")
        for split in range(args.first_split, args.first_split + args.splits):
            loop = own_loops.PROBLEMS[name](split)
            entry = cache.entry(name, split)
            if "full CV" not in entry:
                lam, cost = own_loops.full_cv(loop, 5.0, {})
                entry["full CV"] = (lam, cost, math.nan)
            full_lam = entry["full CV"][0]
            key = repr(float(full_lam))
            if key not in entry["test"]:
                entry["test"][key] = loop.test_loss(float(full_lam))
            cache.save()
            test, lambdas, cost = train_with_evidence(loop, OPTIMIZERS[name], args.lam0)
            excess.append(test / entry["test"][key] - 1)
            costs.append(cost)
            print(
                f"  split {split}: full CV λ={full_lam:.3g} test {entry['test'][key]:.4f}; "
                f"evidence λ per layer {[f'{v:.3g}' for v in lambdas]} test {test:.4f} "
                f"({excess[-1]:+.1%}), {cost:.2f} runs"
            )
        print(
            f"  mean over {len(excess)} splits: excess {np.mean(excess):+.2%}, worst "
            f"{np.max(excess):+.1%}, runs {np.mean(costs):.2f}"
        )


if __name__ == "__main__":
    main()
