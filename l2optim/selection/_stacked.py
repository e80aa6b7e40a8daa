"""Train many copies of one model at once: one vmapped step for every (fold, λ) pair.

A λ search trains the same architecture from the same initial weights many times,
differing only in λ and in the rows it trains on. On small models the cost of a step
is mostly overhead (Python, autograd, kernel launches), so m copies trained one after
the other cost nearly m times what one does. Here the parameters of the m copies are
stacked along a new leading dimension and trained together: :func:`torch.func.vmap`
over :func:`torch.func.functional_call` computes every copy's loss and gradient in one
pass, and one batched update applies each copy's own λ.

The numbers are those of :class:`l2optim.FoldTrainer` trained one model at a time:
same initial weights (its seed), same mini-batches (its shuffling generator, one per
fold), same decayed parameters (:func:`l2optim.decay_groups`), and the update rule of
the optimizer class it names, with λ entering as that optimizer applies it:

* coupled: g ← g + λ·p, then the base update;
* decoupled: p ← p·(1 − s·λ) (:func:`l2optim.decoupled_factor`), then the base
  update, with s the group's decoupled scaling (:func:`l2optim.decay_scale`).

The base updates are torch's own single-tensor functions for SGD (momentum, dampening,
Nesterov), Adam (AMSGrad) and RMSprop (momentum, centring), applied to the stacked
tensors (:func:`l2optim.optimizers.functional_update`). Only the order of floating-point
reductions differs from training the copies one by one (a batched matrix product sums in
its own order), so results agree to rounding, not bit for bit. Layers that draw random numbers in training (dropout) draw
them per copy, but not the numbers the one-at-a-time trainer draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, grad_and_value, vmap

from l2optim._validation import check_non_negative
from l2optim.optimizers import (
    FunctionalUpdate,
    add_coupled_decay,
    check_decoupled_factor,
    decay_groups,
    decay_scale,
    decoupled_factor,
    functional_update,
    shrink,
)
from l2optim.selection._trainer import FoldTrainer

__all__ = ["FoldStacks", "ModelStack", "UpdateRule", "update_rule"]

#: Optimizer settings that change nothing but how the step is computed.
_IMPLEMENTATION_SETTINGS = frozenset(
    {"params", "weight_decay", "foreach", "fused", "capturable", "differentiable"}
)
_DECAY_SETTINGS = frozenset(
    {
        "decoupled_weight_decay",
        "weight_decay_scaling",
        "lr_ref",
        "initial_lr",
        "cautious_weight_decay",
    }
)


# --------------------------------------------------------------------------- the update rule


@dataclass(frozen=True)
class UpdateRule:
    """The arithmetic of one optimizer configuration, for stacked parameters.

    The decay rule with each copy's λ, then the family's base update with λ = 0
    (:func:`l2optim.optimizers.functional_update`: torch's own single-tensor update).

    Attributes:
        base: the family's base update, with its settings (``lr``, ``momentum``, …).
        decoupled: decoupled weight decay (p shrunk) rather than coupled L2.
        scale: s in the decoupled factor 1 − s·λ (the learning rate is constant in a
            :class:`~l2optim.FoldTrainer`, so s is too).
    """

    base: FunctionalUpdate
    decoupled: bool
    scale: float

    @property
    def settings(self) -> dict[str, Any]:
        return self.base.settings

    def check_lambdas(self, lambdas: Tensor) -> None:
        """Raise ``ValueError`` when a decoupled λ would flip the sign of the weights."""
        if self.decoupled and len(lambdas):
            worst = float(lambdas.max())
            check_decoupled_factor(
                decoupled_factor(self.scale, worst),
                where=f"with lambda={worst:.6g}",
                scale=f"s = {self.scale:.6g}",
                fix=f"lambda must be < {1 / self.scale:.6g}: lower the bounds or lr",
            )

    def new_state(self, params: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
        """The optimizer state of stacked parameters before their first step."""
        return {key: self.base.new_state(p) for key, p in params.items()}

    @torch.no_grad()
    def step(
        self,
        params: dict[str, Tensor],
        grads: dict[str, Tensor],
        state: dict[str, dict[str, Tensor]],
        lambdas: Tensor,
        decayed: frozenset[str],
        step: int,
    ) -> None:
        """One update of every copy in place; ``step`` counts from 1 (Adam's bias correction).

        ``lambdas`` has one λ per copy (the leading dimension of every tensor); the
        parameters named in ``decayed`` are decayed with their copy's λ, the others not.
        """
        names = list(params)
        grad_list = [grads[name] for name in names]
        for i, name in enumerate(names):
            if name not in decayed:
                continue
            param = params[name]
            lam = lambdas.reshape((-1,) + (1,) * (param.ndim - 1))
            if self.decoupled:
                shrink([param], decoupled_factor(self.scale, lam), foreach=False)
            else:
                maximize = self.settings["maximize"]
                grad_list[i] = add_coupled_decay(
                    [grad_list[i]], [param], lam, maximize=maximize, foreach=False
                )[0]
        self.base.step([params[n] for n in names], grad_list, [state[n] for n in names], step)


def update_rule(
    optimizer: type[torch.optim.Optimizer], optimizer_kwargs: dict[str, Any]
) -> UpdateRule:
    """The :class:`UpdateRule` of ``optimizer(params, **optimizer_kwargs)``.

    The class is built once on a throwaway parameter, so its own defaults and checks
    apply (a bad ``lr`` fails here as it would in training), and its settings are read
    back from the param group it made.

    Raises:
        TypeError: ``optimizer`` is not a subclass of torch's SGD, Adam or RMSprop
            (l2optim's classes, ``SGDW``/``AdamW``/``RMSpropW`` and torch's own are).
        ValueError: a setting the batched update does not implement (a tensor λ
            schedule, ``maximize`` with coupled decay, …).
    """
    probe = optimizer([torch.zeros(1, requires_grad=True)], **optimizer_kwargs)
    group = probe.param_groups[0]
    try:
        base = functional_update(probe)
    except TypeError:
        raise TypeError(
            "batched training implements SGD, Adam and RMSprop (l2optim's classes and their "
            f"W variants, or torch's); got optimizer={optimizer.__name__}"
        ) from None
    unknown = set(group) - base.settings_read - _IMPLEMENTATION_SETTINGS - _DECAY_SETTINGS
    if unknown:
        raise ValueError(
            f"batched training does not implement the {optimizer.__name__} setting(s) "
            f"{sorted(unknown)}"
        )
    if group.get("differentiable"):
        raise ValueError("batched training does not implement differentiable=True")
    if group.get("cautious_weight_decay"):
        raise ValueError(
            "batched training does not implement cautious_weight_decay=True; race the "
            "FoldTrainer with workers= (its runs then train one by one, with the class's step)"
        )
    base.settings = {key: _plain(value) for key, value in base.settings.items()}
    decoupled = bool(group.get("decoupled_weight_decay", False))
    if decoupled and base.settings["maximize"]:
        raise ValueError("batched training does not implement maximize=True with decoupled decay")
    scaling = group.get("weight_decay_scaling", "lr")
    # FoldTrainer keeps lr constant, so under "schedule" s = lr / lr_ref stays what the
    # class records at construction (1 unless the class records another lr_ref).
    lr = base.settings["lr"]
    lr_ref = _plain(group.get("lr_ref", lr))
    scale = float(decay_scale(scaling, lr, lr_ref)) if decoupled else 1.0
    return UpdateRule(base, decoupled, scale)


def _plain(value: Any) -> Any:
    """A setting as a Python number (tensors and tuples of tensors included)."""
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    if isinstance(value, Tensor):
        return value.item()
    return value


# --------------------------------------------------------------------------- the copies


class ModelStack:
    """Copies of a :class:`~l2optim.FoldTrainer`'s model, one per (fold, λ), trained together.

    Copy i trains on the rows ``splits[folds[i]][0]`` with weight decay ``lambdas[i]``
    and is scored on ``splits[folds[i]][1]``, exactly as
    ``trainer(lambdas[i], *splits[folds[i]])`` would, but all copies step together:
    :meth:`train` runs epochs on every copy, :meth:`scores` returns every copy's current
    validation score, so training can stop, be scored, and go on (a warm start is the
    same run continued, not a restart). :meth:`keep` drops copies.

    Every fold used must have the same number of training rows: then every copy has
    the same number of mini-batches per epoch and of the same sizes, so one step serves
    all. (k-fold training sets differ by at most one row; group folds by size.)

    Attributes:
        optimizer_steps: optimizer steps taken so far, counted per copy (m copies
            stepping once count m): the cost in the units of training runs.
        epochs: epochs trained so far (the same for every copy).
    """

    def __init__(
        self,
        trainer: FoldTrainer,
        splits: Sequence[tuple[Any, Any]],
        folds: Sequence[int],
        lambdas: Sequence[float],
    ) -> None:
        if len(folds) != len(lambdas) or not len(folds):
            raise ValueError(
                f"folds and lambdas must be non-empty and of one length, got {len(folds)} "
                f"and {len(lambdas)}"
            )
        self.trainer = trainer
        self.rule = update_rule(trainer.optimizer, trainer.optimizer_kwargs)
        used = sorted(set(int(f) for f in folds))
        self._train_rows = {
            f: torch.as_tensor(np.asarray(splits[f][0]), dtype=torch.long) for f in used
        }
        self._test_rows = {
            f: torch.as_tensor(np.asarray(splits[f][1]), dtype=torch.long) for f in used
        }
        # Each fold's X and y as FoldTrainer sees them: scaled on that fold's training rows
        # when it standardises (one shared copy otherwise), the scaling stacked per copy.
        data = {f: trainer.fold_data(self._train_rows[f]) for f in used}
        self._slot = {f: (used.index(f) if trainer.standardize else 0) for f in used}
        slots = used if trainer.standardize else used[:1]
        self._X = torch.stack([data[f].X for f in slots])
        self._y = torch.stack([data[f].y for f in slots])
        sizes = {len(rows) for rows in self._train_rows.values()}
        if len(sizes) != 1:
            raise ValueError(
                "every fold of a ModelStack needs the same number of training rows, got "
                f"{sorted(sizes)}"
            )
        self.folds = torch.as_tensor([int(f) for f in folds], dtype=torch.long)
        self._copy_slot = torch.as_tensor([self._slot[int(f)] for f in self.folds])
        self._y_mean, self._y_scale = self._target_scaling(data)
        dtype = trainer.X.dtype if trainer.X.is_floating_point() else torch.get_default_dtype()
        values = [check_non_negative(f"lambdas[{i}]", v) for i, v in enumerate(lambdas)]
        self.lambdas = torch.as_tensor(values, dtype=dtype)
        self.rule.check_lambdas(self.lambdas)
        # One shuffling generator per fold, as each FoldTrainer call makes one.
        self._orders = {f: torch.Generator().manual_seed(trainer.seed) for f in used}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(trainer.seed)
            self._model = trainer.new_model()
            # Random layers continue from the trainer's generator state after the build.
            self._rng_state = torch.get_rng_state()
        self.decayed = _decayed_names(self._model)
        m = len(self.folds)
        trainable = {n: p for n, p in self._model.named_parameters() if p.requires_grad}
        self.params = {n: p.detach().expand(m, *p.shape).clone() for n, p in trainable.items()}
        self._fixed = {
            n: p.detach() for n, p in self._model.named_parameters() if not p.requires_grad
        }
        self.buffers = {n: b.expand(m, *b.shape).clone() for n, b in self._model.named_buffers()}
        self.state = self.rule.new_state(self.params)
        self.finite = torch.ones(m, dtype=torch.bool)
        self.epochs = 0
        self._steps = 0  # optimizer steps of one copy (Adam's bias correction)
        self.optimizer_steps = 0
        self._loss_and_grad = vmap(grad_and_value(self._training_loss), randomness="different")
        self._score = vmap(self._validation_score, randomness="different")

    def __len__(self) -> int:
        return len(self.folds)

    @property
    def train_size(self) -> int:
        """Training rows of each copy's fold."""
        return len(next(iter(self._train_rows.values())))

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps one copy takes per epoch."""
        return self.trainer.steps_per_epoch(self.train_size)

    # -- training -----------------------------------------------------------------

    def _forward(self, params: dict[str, Tensor], buffers: dict[str, Tensor]):
        return lambda x: functional_call(self._model, ({**params, **self._fixed}, buffers), (x,))

    def _target_scaling(self, data: dict[int, Any]) -> tuple[Tensor, Tensor]:
        """Per copy, the mean and scale that take a prediction back to y's units."""
        ones = torch.ones((), dtype=self.trainer.y.dtype)
        y_mean, y_scale = [], []
        for f in self.folds.tolist():
            scaling = data[f].scaling
            unscaled = scaling is None or scaling.y_scale is None
            y_mean.append(ones * 0 if unscaled else scaling.y_mean)
            y_scale.append(ones if unscaled else scaling.y_scale)
        return torch.stack(y_mean), torch.stack(y_scale)

    def _inputs(self, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Per copy, X and y (as its fold's trainer sees them) of its rows."""
        slot = self._copy_slot[:, None]
        return self._X[slot, rows], self._y[slot, rows]

    def _training_loss(self, params, buffers, x, y):
        return self.trainer.training_loss(self._forward(params, buffers)(x), y)

    def _validation_score(self, params, buffers, x, y, y_mean, y_scale):
        prediction = self._forward(params, buffers)(x)
        if self.trainer.standardize:
            prediction = prediction * y_scale + y_mean
        return self.trainer.validation_score(prediction, y)

    def train(self, epochs: int = 1) -> None:
        """Train every copy for ``epochs`` more epochs."""
        used = list(self._orders)
        position = {f: i for i, f in enumerate(used)}
        copy_fold = torch.as_tensor([position[int(f)] for f in self.folds])
        self._model.train()
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self._rng_state)
            for _ in range(int(epochs)):
                batches = zip(
                    *(self.trainer.batches(self._train_rows[f], self._orders[f]) for f in used),
                    strict=True,
                )
                for fold_rows in batches:
                    rows = torch.stack(fold_rows)[copy_fold]
                    grads, losses = self._loss_and_grad(
                        self.params, self.buffers, *self._inputs(rows)
                    )
                    self.finite &= torch.isfinite(losses.detach())
                    self._steps += 1
                    self.rule.step(
                        self.params, grads, self.state, self.lambdas, self.decayed, self._steps
                    )
                    self.optimizer_steps += len(self)
                self.epochs += 1
            self._rng_state = torch.get_rng_state()

    def scores(self) -> np.ndarray:
        """Each copy's validation score now, as a FoldTrainer returns it (inf if diverged)."""
        self._model.eval()
        rows = torch.stack([self._test_rows[int(f)] for f in self.folds])
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            x, _ = self._inputs(rows)
            # Scored against y itself, in its units, as FoldTrainer scores.
            y = self.trainer.y[rows]
            values = self._score(self.params, self.buffers, x, y, self._y_mean, self._y_scale)
            values = values.double().cpu().numpy()
        values = np.where(self.finite.cpu().numpy() & np.isfinite(values), values, np.inf)
        return values

    def keep(self, index: Sequence[int] | Tensor) -> None:
        """Keep only the copies at positions ``index`` (in that order), dropping the rest."""
        index = torch.as_tensor(index, dtype=torch.long)
        select = lambda t: t.index_select(0, index)  # noqa: E731
        self.params = {n: select(p) for n, p in self.params.items()}
        self.buffers = {n: select(b) for n, b in self.buffers.items()}
        self.state = {n: {k: select(v) for k, v in s.items()} for n, s in self.state.items()}
        self.finite = select(self.finite)
        self.folds = select(self.folds)
        self._copy_slot = select(self._copy_slot)
        self._y_mean, self._y_scale = select(self._y_mean), select(self._y_scale)
        self.lambdas = select(self.lambdas)

    def __repr__(self) -> str:
        return (
            f"ModelStack(copies={len(self)}, folds={sorted(set(self.folds.tolist()))}, "
            f"epochs={self.epochs}, optimizer_steps={self.optimizer_steps})"
        )


def _decayed_names(model: torch.nn.Module) -> frozenset[str]:
    """Names of the parameters :func:`l2optim.decay_groups` decays."""
    decayed = {
        id(p)
        for group in decay_groups(model, 1.0)
        if group["weight_decay"]
        for p in group["params"]
    }
    return frozenset(n for n, p in model.named_parameters() if id(p) in decayed)


class FoldStacks:
    """Runs of a set of λ on every fold of a split, trained in lockstep.

    The contestants of a race: copy (fold j, λ i) for every pair, held in one
    :class:`ModelStack` per training-set size (k-fold training sets differ by at most
    one row, so at most two). :meth:`scores` returns an array (λ, folds), :meth:`keep`
    drops λ on every fold at once. Every run trains at ``λ · train_scale``; ``lambdas``
    stay as given.
    """

    def __init__(
        self,
        trainer: FoldTrainer,
        splits: Sequence[tuple[Any, Any]],
        lambdas: Sequence[float],
        train_scale: float = 1.0,
    ) -> None:
        self.lambdas = np.asarray([float(v) for v in lambdas])
        self.n_folds = len(splits)
        by_size: dict[int, list[int]] = {}
        for fold, (train, _) in enumerate(splits):
            by_size.setdefault(len(train), []).append(fold)
        self._groups = list(by_size.values())
        m = len(self.lambdas)
        self._stacks = [
            ModelStack(
                trainer,
                splits,
                [f for f in folds for _ in range(m)],
                list(self.lambdas * train_scale) * len(folds),
            )
            for folds in self._groups
        ]

    @property
    def epochs(self) -> int:
        return self._stacks[0].epochs

    @property
    def optimizer_steps(self) -> int:
        return sum(stack.optimizer_steps for stack in self._stacks)

    @property
    def cost(self) -> int:
        """The work done, for a race: optimizer steps, every copy's counted."""
        return self.optimizer_steps

    def close(self) -> None:
        """Nothing to end: the copies are tensors of this process."""

    def train_to(self, epochs: int) -> None:
        """Train every run on until it has trained ``epochs`` epochs."""
        for stack in self._stacks:
            stack.train(epochs - stack.epochs)

    def scores(self) -> np.ndarray:
        """Validation scores now, shape (λ, folds), folds in split order; inf if diverged."""
        out = np.empty((len(self.lambdas), self.n_folds))
        m = len(self.lambdas)
        for folds, stack in zip(self._groups, self._stacks, strict=True):
            out[:, folds] = stack.scores().reshape(len(folds), m).T
        return out

    def keep(self, index: Sequence[int]) -> None:
        """Keep the λ at positions ``index`` (on every fold), dropping the others."""
        index = [int(i) for i in index]
        m = len(self.lambdas)
        for folds, stack in zip(self._groups, self._stacks, strict=True):
            stack.keep([g * m + i for g in range(len(folds)) for i in index])
        self.lambdas = self.lambdas[index]
