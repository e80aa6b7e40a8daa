"""λ per layer in one training run, from the Laplace evidence (a prototype, measured).

Run: ``python benchmarks/selection/marglik.py --problems noisy_classes --splits 10 --cache
FILE`` (the ``--cache`` file of ``own_loops.py``, or of ``lambda_cost.py`` for its problems,
which holds full CV's choice per split; without it full CV runs here). Nothing is asserted.
Variants: ``--tied`` (one λ for every layer), ``--curvature diagonal``, ``--rows M`` (the
curvature of M rows drawn at each update), ``--every E``, ``--cosine`` (every run, full CV's
too, under cosine annealing to zero); beside it, ``--across-runs K`` (one λ by the best
evidence at the end of K completed runs), ``--group-grid K`` (the best pair of a K × K grid
of first-layer and other-layer λ on the test rows, an oracle) and ``--layers A,B`` (only
train at given λ per layer).

The problems are ``own_loops.py``'s, trained by their own loops, schedules and optimizers,
and ``lambda_cost.py``'s (digits, noisy_regression, breast_cancer) trained by a loop here with
a FoldTrainer's setting: the same data, network, optimizer, loss, epochs and batch size.
Coupled L2 is a Gaussian prior. Minimising the mean loss plus (λ/2)·‖θ‖² is maximising the
posterior of a model with prior precision α when λ = α/N (cross-entropy) or λ = 2sα/(βN)
(s·the mean squared error, noise precision β; s = ½ for a FoldTrainer's default loss). The decoupled form is a prior too: at the
fixed point of a decoupled Adam step, m̂/(√v̂ + ε) = −λ·θ, so the gradient of the loss
equals −λ·(√v̂ + ε)·θ, a coupled L2 whose strength per coordinate is λ·c_j with
c_j = √v̂_j + ε. The prior precision of coordinate j is then α_g·c_j: one α per layer,
shaped by Adam's second moments (c_j = 1 for SGD and for the coupled form). The evidence
chooses each layer's α from the training rows alone (Immer et al., ICML 2021, optimise the
same evidence online):

    log p(D | α, β) ≈ log p(D | θ) − ½ Σ_g α_g ‖θ_g‖²_c − ½ log det(I + L^½ K L^½),
    K = Σ_g J_g diag(1/c) J_gᵀ / α_g,

J the Jacobian of the network's outputs on the N training rows and L the Hessian of the
loss in the outputs (β for squared error, diag(p) − ppᵀ per row for cross-entropy). This is
the generalised Gauss-Newton's determinant written in the rows' space (``--curvature
exact``): it is exact for any number of parameters, and cheap while N·classes is a few
hundred. The undecayed biases have a nearly flat prior (α = 1e-4). Every ``--every`` epochs after
the first quarter, the final model's training pauses, L-BFGS maximises the evidence over
log α (and log β) at the current weights, and each layer's group takes its λ, moved at most
2× per update. Cost: the training run plus one Jacobian pass per update, counted as one
epoch of rows per output.

``--curvature diagonal`` is the first version: MacKay's fixed point α_g ← γ_g/‖θ_g‖²_c with
a diagonal GGN and β from the residuals (one output only).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

import l2optim

sys.path.insert(0, os.path.dirname(__file__))
import own_loops  # noqa: E402
from _study import Cache  # noqa: E402

BURN_IN = 0.25  # the first update after a quarter of the epochs
MAX_CHANGE = 2.0  # λ moves at most by this factor per update
FLAT = 1e-4  # the prior precision of the undecayed parameters
TRACE = os.environ.get("MARGLIK_TRACE") == "1"
BERNOULLI = {"breast_cancer"}  # the problems trained with binary cross-entropy


def layer_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """One group per weight matrix (its own λ), one undecayed group for the rest."""
    decayed, rest = l2optim.decay_groups(model, weight_decay)
    groups = [
        {"params": [p], "param_names": [name], "weight_decay": weight_decay}
        for p, name in zip(decayed["params"], decayed["param_names"], strict=True)
    ]
    return [*groups, rest]


def row_jacobians(model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """∂f/∂θ per parameter, one row per (training row, output), in float64."""
    params = {k: v.detach() for k, v in model.named_parameters()}

    def output(p, row):
        return functional_call(model, p, (row.unsqueeze(0),)).squeeze(0)

    jacobians = vmap(jacrev(output), in_dims=(None, 0))(params, x)
    return {k: j.reshape(-1, params[k].numel()).double() for k, j in jacobians.items()}


def fixed_point_weights(optimizer: torch.optim.Optimizer, group: dict) -> torch.Tensor:
    """c_j: the coupled L2 that the group's λ is at the fixed point, per unit λ."""
    p = group["params"][0]
    state = optimizer.state[p]
    if group.get("decoupled_weight_decay") and "exp_avg_sq" in state:  # Adam's family
        v = state["exp_avg_sq"] / (1 - group["betas"][1] ** float(state["step"]))
        return (v.sqrt() + group["eps"]).double().flatten()
    if group.get("decoupled_weight_decay") and "square_avg" in state:  # RMSprop
        return (state["square_avg"].sqrt() + group["eps"]).double().flatten()
    return torch.ones(p.numel(), dtype=torch.float64)


def likelihood_of(loop: own_loops.Loop) -> str:
    """The likelihood the training loss is: class labels are categorical, a single logit
    under binary cross-entropy Bernoulli, anything else Gaussian."""
    if not torch.is_floating_point(loop.y):
        return "categorical"
    return "bernoulli" if loop.name.partition("+")[0] in BERNOULLI else "gaussian"


def squared_error_scale(loop: own_loops.Loop) -> float:
    """s in loss = s·mean(r²): 1 for the mean squared error, ½ for FoldTrainer's default. The
    Gaussian's λ is then 2s·α/(βN)."""
    return float(loop.loss(torch.zeros(1, 1), torch.ones(1)))


class Evidence:
    """The Laplace evidence at the current weights as a function of (log α, log β)."""

    def __init__(
        self, model, optimizer, groups, x, y, likelihood: str, rows: torch.Tensor | None = None
    ) -> None:
        # The curvature from a subset of the rows (``rows``) stands for all N: its kernels
        # are scaled by N/m; the fit term always sums over every row.
        rows = torch.arange(len(y)) if rows is None else rows
        scale = len(y) / len(rows)
        jacobians = row_jacobians(model, x[rows])
        named = dict(model.named_parameters())
        decayed = [g["param_names"][0] for g in groups[:-1]]
        with torch.no_grad():
            out = model(x).double()
        if likelihood == "categorical":
            p = out[rows].softmax(-1)
            hessian = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
            values, vectors = torch.linalg.eigh(hessian)
            self.root = vectors @ torch.diag_embed(values.clamp_min(0).sqrt()) @ vectors.mT
            self.nll = float(nn.functional.cross_entropy(out, y, reduction="sum"))
        elif likelihood == "bernoulli":
            p = out[rows].sigmoid()
            self.root = (p * (1 - p)).sqrt().unsqueeze(-1)  # one 1 × 1 block per row
            self.nll = float(nn.functional.binary_cross_entropy_with_logits(
                out.squeeze(-1), y.double(), reduction="sum"))
        else:
            self.root = None
            self.rss = float((out.squeeze(-1) - y.double()).pow(2).sum())
        self.classification, self.n = likelihood != "gaussian", len(y)
        self.kernels, self.norms = [], []
        for name, group in zip(decayed, groups[:-1], strict=True):
            c = fixed_point_weights(optimizer, group)
            kernel = (jacobians[name] / c) @ jacobians[name].T
            self.kernels.append(self._sandwich(kernel * scale))
            theta = named[name].detach().double().flatten()
            self.norms.append(float((theta.pow(2) * c).sum()))
        flat = [jacobians[k] for k in jacobians if k not in decayed]
        self.flat = self._sandwich(sum(j @ j.T for j in flat) * scale / FLAT)

    def _sandwich(self, kernel: torch.Tensor) -> torch.Tensor:
        """L^½ K L^½, L^½ block-diagonal with one (classes × classes) block per row."""
        if self.root is None:
            return kernel
        n, c = self.root.shape[:2]
        blocks = kernel.reshape(n, c, n, c)
        return torch.einsum("iab,ibjd,jdc->iajc", self.root, blocks, self.root).reshape(n * c, -1)

    def negative_log(self, log_alpha: torch.Tensor, log_beta: torch.Tensor) -> torch.Tensor:
        alpha = log_alpha.exp()
        kernel = self.flat + sum(k / a for k, a in zip(self.kernels, alpha, strict=True))
        if self.classification:
            fit, beta = self.nll, 1.0
        else:
            beta = log_beta.exp()
            fit = beta / 2 * self.rss - self.n / 2 * log_beta
        eye = torch.eye(kernel.shape[0], dtype=kernel.dtype)
        prior = sum(a * q for a, q in zip(alpha, self.norms, strict=True)) / 2
        return fit + prior + torch.linalg.slogdet(eye + beta * kernel)[1] / 2

    def maximise(self, alpha: np.ndarray, beta: float, tied: bool) -> tuple[np.ndarray, float]:
        log_alpha = torch.tensor(np.log(alpha[:1] if tied else alpha), requires_grad=True)
        log_beta = torch.tensor(math.log(beta), dtype=torch.float64, requires_grad=True)
        search = torch.optim.LBFGS([log_alpha, log_beta], max_iter=20,
                                   line_search_fn="strong_wolfe", tolerance_grad=1e-9)

        def closure():
            search.zero_grad()
            value = self.negative_log(log_alpha.expand(len(alpha)), log_beta)
            value.backward()
            return value

        search.step(closure)
        found = log_alpha.detach().expand(len(alpha)).exp().numpy().copy()
        return found, float(log_beta.detach().exp())


def negative_log_evidence_at(evidence: Evidence, lam: float, n: int, scale: float) -> float:
    """−log evidence with every layer's prior set by the λ it trained with (the noise
    precision β at its best)."""
    layers = len(evidence.kernels)
    if evidence.classification:
        log_alpha = torch.full((layers,), math.log(lam * n), dtype=torch.float64)
        return float(evidence.negative_log(log_alpha, torch.zeros((), dtype=torch.float64)))
    log_beta = torch.zeros((), dtype=torch.float64, requires_grad=True)
    search = torch.optim.LBFGS([log_beta], max_iter=50, line_search_fn="strong_wolfe")

    def value():
        # λ = 2sα/(βN): the prior precision moves with β at a fixed λ
        log_alpha = (math.log(lam * n / (2 * scale)) + log_beta).expand(layers)
        return evidence.negative_log(log_alpha, log_beta)

    def closure():
        search.zero_grad()
        v = value()
        v.backward()
        return v

    search.step(closure)
    return float(value().detach())


def across_runs(loop: own_loops.Loop, points: int) -> tuple[float, float]:
    """One λ, the best evidence at the end of completed runs on every training row over a
    log grid of the bounds (no folds): its test loss and the λ."""
    found = []
    for lam in np.geomspace(*loop.bounds, points):
        model, optimizer, groups = train_layers(loop, [float(lam)] * layer_count(loop))
        likelihood = likelihood_of(loop)
        evidence = Evidence(model, optimizer, groups, loop.x, loop.y, likelihood)
        with torch.no_grad():
            test = float(loop.loss(model(loop.x_test), loop.y_test))
        scale = squared_error_scale(loop) if likelihood == "gaussian" else 1.0
        found.append((negative_log_evidence_at(evidence, float(lam), loop.n, scale), test, lam))
    _, test, lam = min(found)
    return test, float(lam)


def diagonal_update(model, optimizer, groups, x, y, alphas, beta):
    """MacKay's fixed point α_g ← γ_g/‖θ_g‖²_c with a diagonal GGN (one output)."""
    h = {k: j.pow(2).sum(0) for k, j in row_jacobians(model, x).items()}
    with torch.no_grad():
        rss = float((model(x).squeeze(-1) - y).pow(2).sum())
    named = dict(model.named_parameters())
    for i, group in enumerate(groups[:-1]):
        name = group["param_names"][0]
        c = fixed_point_weights(optimizer, group)
        hb, prior = beta * h[name], alphas[i] * c
        gamma = float((hb / (hb + prior)).sum())
        theta = named[name].detach().double().flatten()
        alphas[i] = max(gamma, 1e-8) / max(float((theta.pow(2) * c).sum()), 1e-12)
    # The diagonal counts more well-determined parameters than rows (it ignores their
    # correlations), so MacKay's β oscillates: the residuals' maximum likelihood instead.
    return alphas, len(y) / max(rss, 1e-12)


def foldtrainer_loop(name: str, split: int) -> own_loops.Loop:
    """A ``lambda_cost.py`` problem as a loop of its own: the same data, network, optimizer,
    loss, epochs and batch size, at a constant lr as a FoldTrainer trains."""
    import lambda_cost

    problem = lambda_cost.PROBLEMS[name]
    x, y, x_test, y_test, setting = problem.make(split)
    given = setting.get("loss")

    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if given is None:  # FoldTrainer's default: half the mean squared error
            return 0.5 * nn.functional.mse_loss(out.squeeze(-1), target)
        return given(out.squeeze(-1) if torch.is_floating_point(target) else out, target)

    optimizer, kwargs = setting["optimizer"], setting.get("optimizer_kwargs", {})
    return own_loops.Loop(
        name, problem.bounds, setting["epochs"], x, y, x_test, y_test,
        model=setting["model_factory"],
        optimizer=lambda groups, lam: optimizer(groups, **kwargs),
        schedule=lambda opt, steps: torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0),
        loss=loss, batch_size=setting["batch_size"], seed=split,
    )


PROBLEMS = {
    **own_loops.PROBLEMS,
    **{name: functools.partial(foldtrainer_loop, name)
       for name in ("digits", "noisy_regression", "breast_cancer")},
}


def cosine(optimizer: torch.optim.Optimizer, steps: int):
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)


def layer_count(loop: own_loops.Loop) -> int:
    torch.manual_seed(loop.seed)
    return len(layer_groups(loop.model(), 0.0)) - 1


def train_layers(loop: own_loops.Loop, lambdas: list[float], update=None):
    """The final model on every training row, a λ per layer; ``update(epoch, model,
    optimizer, groups)`` runs after each epoch but the last and may change the groups' λ."""

    def groups(model: nn.Module) -> list[dict]:
        layers = layer_groups(model, 0.0)
        for group, lam in zip(layers, lambdas, strict=False):
            group["weight_decay"] = lam
        return layers

    for epoch, trained in enumerate(loop.by_epoch(groups, np.arange(loop.n)), 1):
        if trained is None:  # diverged: the last finite state stands
            break
        model, optimizer = trained
        if update is not None and epoch < loop.epochs:
            update(epoch, model, optimizer, optimizer.param_groups)
    return model, optimizer, optimizer.param_groups


def train_with_evidence(loop: own_loops.Loop, curvature: str, tied: bool, every: int,
                        lam0: float, rows: int | None = None):
    """The final model on every training row, λ per layer from the evidence; its test loss,
    the λ it ended with and the cost in training runs."""
    likelihood = likelihood_of(loop)
    n = loop.n
    with torch.no_grad():
        outputs = loop.model()(loop.x[:1]).shape[-1]
    state = {"beta": 1.0, "passes": 0}
    generator = torch.Generator().manual_seed(loop.seed)

    def lam_per_alpha(beta: float) -> float:
        return 1 / n if likelihood != "gaussian" else 2 * squared_error_scale(loop) / (beta * n)

    state["alphas"] = np.full(layer_count(loop), lam0 / lam_per_alpha(1.0))

    def update(done, model, optimizer, groups):
        if done < BURN_IN * loop.epochs or done % every:
            return
        if curvature == "exact":
            subset = None
            if rows is not None and rows < n:
                subset = torch.randperm(n, generator=generator)[:rows]
            evidence = Evidence(model, optimizer, groups, loop.x, loop.y, likelihood, subset)
            alphas, beta = evidence.maximise(state["alphas"], state["beta"], tied)
            state["passes"] += outputs * min(rows or n, n) / n
        else:
            alphas, beta = diagonal_update(model, optimizer, groups, loop.x, loop.y,
                                           state["alphas"], state["beta"])
            state["passes"] += 1
        state.update(alphas=alphas, beta=beta)
        for group, alpha in zip(groups[:-1], alphas, strict=True):
            # Damped: θ is not the MAP of the current λ mid-training, and a jump runs away
            # (a larger λ shrinks θ, which raises α).
            target, old = alpha * lam_per_alpha(beta), group["weight_decay"]
            group["weight_decay"] = min(max(target, old / MAX_CHANGE), old * MAX_CHANGE)
        if TRACE:
            print(f"    epoch {done}: beta {beta:.3g} "
                  f"λ {[round(g['weight_decay'], 4) for g in groups[:-1]]}")

    model, _, groups = train_layers(loop, [lam0] * layer_count(loop), update)
    with torch.no_grad():
        test = float(loop.loss(model(loop.x_test), loop.y_test))
    lambdas = [g["weight_decay"] for g in groups[:-1]]
    return test, lambdas, 1 + state["passes"] / loop.epochs


def test_loss(loop: own_loops.Loop, lambdas: list[float]) -> float:
    model, *_ = train_layers(loop, lambdas)
    with torch.no_grad():
        return float(loop.loss(model(loop.x_test), loop.y_test))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="regression,wide_regression,noisy_classes")
    parser.add_argument("--splits", type=int, default=10)
    parser.add_argument("--first-split", type=int, default=0)
    parser.add_argument("--curvature", choices=["exact", "diagonal"], default="exact")
    parser.add_argument("--tied", action="store_true", help="one λ for every layer")
    parser.add_argument("--every", type=int, default=4, help="epochs between updates")
    parser.add_argument("--lam0", type=float, default=0.1, help="λ before the first update")
    parser.add_argument("--rows", type=int, help="the curvature from this many rows, drawn "
                        "anew at each update (default: every training row)")
    parser.add_argument("--cache", help="own_loops.py's cache of full CV")
    parser.add_argument("--across-runs", type=int, default=0, metavar="K",
                        help="also one λ by the best evidence at the end of K completed runs "
                        "on a log grid (K runs, no folds)")
    parser.add_argument("--cosine", action="store_true", help="train every run (full CV's "
                        "too) under cosine annealing to zero instead of the problem's schedule")
    parser.add_argument("--layers", help="only train at these λ per layer (comma-separated; "
                        "the last one for every later layer) and print the test losses")
    parser.add_argument("--group-grid", type=int, default=0, metavar="K",
                        help="also the best of a K×K grid of (the first layer's λ, the other "
                        "layers' λ) on the test rows: what a λ per group can gain (an oracle)")
    args = parser.parse_args()
    if args.tied and args.curvature == "diagonal":
        parser.error("--tied needs --curvature exact (the diagonal fixed point is per layer)")
    torch.set_num_threads(1)
    cache = Cache(args.cache)
    own_loops.PROBLEMS["regression"](0).test_loss(0.1)  # warm up before anything is timed
    def problem(name: str, split: int) -> own_loops.Loop:
        loop = PROBLEMS[name](split)
        if args.cosine:
            loop = dataclasses.replace(loop, name=f"{name}+cosine", schedule=cosine)
        return loop

    for name in args.problems.split(","):
        if args.layers:
            given = [float(v) for v in args.layers.split(",")]
            for split in range(args.first_split, args.first_split + args.splits):
                loop = problem(name, split)
                count = layer_count(loop)
                lambdas = [*given, *[given[-1]] * count][:count]
                print(f"{name} split {split}: λ per layer {lambdas} test "
                      f"{test_loss(loop, lambdas):.4f}")
            continue
        excess, costs, slowdown, grid_gain, across = [], [], [], [], []
        print(f"\n{name}: evidence λ per layer in one run ({args.curvature} curvature"
              f"{', tied' if args.tied else ''}), against full 5-fold CV's single λ")
        for split in range(args.first_split, args.first_split + args.splits):
            loop = problem(name, split)
            entry = cache.entry(loop.name, split)
            if "full CV" not in entry:
                lam, cost = own_loops.full_cv(loop, 5.0, {})
                entry["full CV"] = (lam, cost, math.nan)
            cache.save()
            full_lam = entry["full CV"][0]
            # Full CV's λ trained by this loop (a lambda_cost.py cache holds a FoldTrainer's
            # choice: the same problem, other batches), timed as the plain training.
            start = time.perf_counter()
            reference = loop.test_loss(float(full_lam))
            plain = time.perf_counter() - start
            start = time.perf_counter()
            test, lambdas, cost = train_with_evidence(
                loop, args.curvature, args.tied, args.every, args.lam0, args.rows
            )
            slowdown.append((time.perf_counter() - start) / plain)
            excess.append(test / reference - 1)
            costs.append(cost)
            if args.across_runs:
                test_r, lam_r = across_runs(loop, args.across_runs)
                across.append((test_r / reference - 1, args.across_runs))
                print(f"    across {args.across_runs} completed runs: λ={lam_r:.3g} test {test_r:.4f} "
                      f"({across[-1][0]:+.1%})")
            if args.group_grid:
                grid = np.geomspace(*loop.bounds, args.group_grid)
                pairs = {
                    (a, b): test_loss(loop, [a, *[b] * (len(lambdas) - 1)])
                    for a in grid for b in grid
                }
                best = min((v, a, b) for (a, b), v in pairs.items())
                single = min(v for (a, b), v in pairs.items() if a == b)
                grid_gain.append(best[0] / reference - 1)
                print(f"    grid of {args.group_grid}×{args.group_grid} on the test rows: best "
                      f"{best[0]:.4f} ({grid_gain[-1]:+.1%}) at first {best[1]:.3g}, others "
                      f"{best[2]:.3g}; the grid's best single λ {single:.4f}")
            print(
                f"  split {split}: full CV λ={full_lam:.3g} test {reference:.4f}; "
                f"evidence λ per layer {[f'{v:.3g}' for v in lambdas]} test {test:.4f} "
                f"({excess[-1]:+.1%}), {cost:.2f} runs, {slowdown[-1]:.2f}× the seconds"
            )
        print(
            f"  mean over {len(excess)} splits: excess {np.mean(excess):+.2%}, worst "
            f"{np.max(excess):+.1%}, runs {np.mean(costs):.2f}, seconds "
            f"{np.mean(slowdown):.2f}× one plain training"
            + (f"; per-group grid oracle {np.mean(grid_gain):+.2%}" if grid_gain else "")
            + (f"; across runs {np.mean([e for e, _ in across]):+.2%}, worst "
               f"{max(e for e, _ in across):+.1%}, {np.mean([r for _, r in across]):.1f} runs"
               if across else "")
        )


if __name__ == "__main__":
    main()
