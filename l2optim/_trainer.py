"""A ready ``fit_score`` for k-fold λ search: train a torch module on one fold, score the rest."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from l2optim._groups import decay_groups
from l2optim._kfold import _check_count
from l2optim._optimizers import SGD

__all__ = ["FoldTrainer"]

Loss = Callable[[Tensor, Tensor], Tensor]


class FoldTrainer:
    r"""Train a fresh torch module with weight decay λ on some samples; score it on others.

    An instance is a ``fit_score(lam, train_idx, test_idx) -> float`` for
    :func:`l2optim.kfold_objective`. Each call builds a new model with
    ``model_factory()``, trains it on the rows ``train_idx`` of ``X``, ``y`` for
    ``epochs`` passes in shuffled mini-batches with ``optimizer`` over the param groups
    ``l2optim.decay_groups(model, lam)`` (the weights decay with strength λ, coupled or
    decoupled as chosen; biases and normalisation layers do not), and returns
    ``score`` on the rows ``test_idx``.

    **One λ for the whole library.** The default training loss of a batch B is half the
    mean squared error,

    .. math:: \ell_B(\theta) = \frac{1}{2|B|}\sum_{i \in B}
              \lVert f_\theta(x_i) - y_i\rVert^2,

    so coupled decay at λ minimises
    :math:`\frac{1}{2n}\lVert Xw + b - y\rVert^2 + \frac{\lambda}{2}\lVert w\rVert^2`
    for a linear model: full batch, it converges to the ridge solution
    :math:`w^* = (X_c^\top X_c/n + \lambda I)^{-1}X_c^\top y_c/n` of
    :func:`l2optim.ridge_cv` at the same λ, and a λ chosen here means what it means there
    and in the optimizers. The default validation score is the plain mean squared error

    .. math:: s = \frac{1}{|T|\,k}\sum_{i \in T}\lVert f_\theta(x_i) - y_i\rVert^2

    over the held-out rows T and the k outputs, the number a CV table shows (and the
    one :func:`l2optim.ridge_cv` reports). A custom ``loss`` is also the score unless
    ``score`` says otherwise.

    **Divergence.** A training run whose loss becomes NaN or infinite (too large a
    learning rate, say) stops there and returns ``math.inf``, as does a non-finite
    validation score, so a λ search counts it as +inf and goes on.

    **Determinism.** Every call seeds torch with ``seed`` (inside
    :func:`torch.random.fork_rng`, leaving the caller's generator alone) before building
    the model, and shuffles batches with its own generator: the same arguments give
    the same number, in this process or in a worker, and every fold and λ starts from
    the same initial weights.

    **Pickling.** The trainer is shipped to worker processes with its data, so
    ``model_factory``, ``loss`` and ``score`` must pickle: a module-level function or
    class, :func:`functools.partial` of one (``partial(nn.Linear, 10, 1)``), or a loss
    module.

    Args:
        model_factory: a callable returning a new ``nn.Module``; it is moved to the
            device and floating dtype of ``X``.
        X: inputs, a tensor or array whose first dimension indexes the samples.
        y: targets, first dimension the samples. A model output of shape (n, 1) is
            compared with targets of shape (n,) as (n,).
        loss: the training objective, ``loss(prediction, target) -> scalar tensor``,
            minimised on each batch; default half the mean squared error (above).
        score: the validation score, ``score(prediction, target) -> scalar tensor``,
            lower is better; default the mean squared error when ``loss`` is the
            default, ``loss`` itself when it is not.
        optimizer: an optimizer class taking param groups, such as ``l2optim.SGD``,
            ``l2optim.AdamW`` or ``l2optim.RMSprop``.
        optimizer_kwargs: further arguments of ``optimizer`` (``lr``, ``momentum``, …);
            not ``weight_decay``, which is λ.
        decoupled_weight_decay: passed to ``optimizer`` when not None; None keeps the
            class's default (coupled for ``SGD``, decoupled for ``AdamW``).
        epochs: passes over the training samples, ≥ 1.
        batch_size: samples per step, ≥ 1; None for full batch.
        seed: seed of the initial weights and of the batch order.
    """

    def __init__(
        self,
        model_factory: Callable[[], nn.Module],
        X: Tensor | np.ndarray,
        y: Tensor | np.ndarray,
        *,
        loss: Loss | None = None,
        score: Loss | None = None,
        optimizer: type[torch.optim.Optimizer] = SGD,
        optimizer_kwargs: dict[str, Any] | None = None,
        decoupled_weight_decay: bool | None = None,
        epochs: int = 100,
        batch_size: int | None = None,
        seed: int = 0,
    ) -> None:
        if not callable(model_factory):
            raise TypeError(f"model_factory must be callable, got {type(model_factory).__name__}")
        for name, criterion in (("loss", loss), ("score", score)):
            if criterion is not None and not callable(criterion):
                raise TypeError(f"{name} must be callable or None, got {type(criterion).__name__}")
        if not (isinstance(optimizer, type) and issubclass(optimizer, torch.optim.Optimizer)):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer subclass, got {optimizer!r}"
            )
        optimizer_kwargs = dict(optimizer_kwargs or {})
        if "weight_decay" in optimizer_kwargs:
            raise ValueError(
                "optimizer_kwargs must not contain 'weight_decay': λ is the argument of each call"
            )
        self.X = torch.as_tensor(X)
        self.y = torch.as_tensor(y)
        if self.X.ndim == 0 or self.y.ndim == 0 or len(self.X) != len(self.y):
            raise ValueError(
                "X and y must have the same number of samples (first dimension), got shapes "
                f"{tuple(self.X.shape)} and {tuple(self.y.shape)}"
            )
        self.model_factory = model_factory
        self.loss = half_mean_squared_error if loss is None else loss
        if score is None:
            score = mean_squared_error if loss is None else loss
        self.score = score
        self.optimizer = optimizer
        self.optimizer_kwargs = optimizer_kwargs
        if decoupled_weight_decay is not None:
            self.optimizer_kwargs["decoupled_weight_decay"] = bool(decoupled_weight_decay)
        self.epochs = _check_count("epochs", epochs, low=1)
        self.batch_size = (
            None if batch_size is None else _check_count("batch_size", batch_size, low=1)
        )
        self.seed = int(seed)

    def __call__(self, lam: float, train_idx: Any, test_idx: Any) -> float:
        """Train at weight decay ``lam`` on ``train_idx``; the score on ``test_idx``, or inf."""
        train = torch.as_tensor(np.asarray(train_idx), dtype=torch.long)
        test = torch.as_tensor(np.asarray(test_idx), dtype=torch.long)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            model = self._new_model()
            optimizer = self.optimizer(decay_groups(model, float(lam)), **self.optimizer_kwargs)
            if not self._train(model, optimizer, train):
                return math.inf
        value = self._validation_score(model, test)
        return value if math.isfinite(value) else math.inf

    def _new_model(self) -> nn.Module:
        # Built where the factory builds it, under the seed, then moved: the same initial
        # weights whatever the device of the data.
        model = self.model_factory().to(device=self.X.device)
        if self.X.is_floating_point():
            model = model.to(dtype=self.X.dtype)
        return model.train()

    def _train(self, model: nn.Module, optimizer: torch.optim.Optimizer, train: Tensor) -> bool:
        """Run the epochs; False as soon as a training loss is not finite."""
        order = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epochs):
            for batch in self._batches(train, order):
                optimizer.zero_grad(set_to_none=True)
                loss = self._apply(self.loss, model, batch)
                if not torch.isfinite(loss).item():
                    return False
                loss.backward()
                optimizer.step()
        return True

    def _batches(self, train: Tensor, order: torch.Generator) -> Iterator[Tensor]:
        if self.batch_size is None or self.batch_size >= len(train):
            yield train
            return
        shuffled = train[torch.randperm(len(train), generator=order)]
        yield from shuffled.split(self.batch_size)

    def _apply(self, criterion: Loss, model: nn.Module, rows: Tensor) -> Tensor:
        """``criterion`` of the model's predictions on ``rows`` against their targets."""
        prediction = model(self.X[rows])
        target = self.y[rows]
        # A regression head of width 1 against targets of shape (n,): compare as (n,),
        # not broadcast to (n, n).
        if prediction.ndim == target.ndim + 1 and prediction.shape[-1] == 1:
            prediction = prediction.squeeze(-1)
        return criterion(prediction, target)

    def _validation_score(self, model: nn.Module, test: Tensor) -> float:
        model.eval()
        with torch.no_grad():
            return float(self._apply(self.score, model, test))

    def __repr__(self) -> str:
        return (
            f"FoldTrainer(model_factory={self.model_factory!r}, n_samples={len(self.X)}, "
            f"loss={_name_of(self.loss)}, score={_name_of(self.score)}, "
            f"optimizer={self.optimizer.__name__}, optimizer_kwargs={self.optimizer_kwargs!r}, "
            f"epochs={self.epochs}, batch_size={self.batch_size}, seed={self.seed})"
        )


def half_mean_squared_error(prediction: Tensor, target: Tensor) -> Tensor:
    r""":math:`\frac{1}{2n}\sum_{i=1}^n \lVert p_i - t_i\rVert^2`: the data term of ridge.

    Summed over the outputs of a row, averaged over the n rows, so each output column
    gets the ridge fixed point of the library's λ.
    """
    return 0.5 * F.mse_loss(prediction, target, reduction="sum") / target.shape[0]


def mean_squared_error(prediction: Tensor, target: Tensor) -> Tensor:
    """The mean of the squared errors over every row and output."""
    return F.mse_loss(prediction, target)


def _name_of(criterion: Loss) -> str:
    return getattr(criterion, "__name__", None) or repr(criterion)
