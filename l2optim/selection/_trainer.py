"""A ready ``fit_score`` for k-fold λ search: train a torch module on one fold, score the rest."""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from l2optim._validation import check_bool, check_callable, check_count, check_optimizer_class
from l2optim.optimizers import SGD, decay_groups

__all__ = ["FoldData", "FoldTrainer", "Scaling", "Standardized"]

Loss = Callable[[Tensor, Tensor], Tensor]


class FoldTrainer:
    r"""Train a fresh torch module with weight decay λ on some samples; score it on others.

    An instance is a ``fit_score(lam, train_idx, test_idx) -> float`` for
    :func:`l2optim.kfold_objective`. Each call builds a new model with
    ``model_factory()`` (or copies the template module), trains it on the rows
    ``train_idx`` of ``X``, ``y`` for
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
    :func:`torch.random.fork_rng`, leaving the caller's generator alone) and builds the
    model under torch's own defaults, float32 on the CPU, whatever default dtype or
    device the process has set, before moving it to ``X``'s device and dtype; it
    shuffles batches with its own generator. So every fold and λ starts from the same
    initial weights, and the same arguments give the same number in this process and
    in a worker process, forked or fresh (the pool of ``workers=N``, a dask worker),
    with the same torch build and device, on one condition: the same number of torch
    threads where the data is large. torch's CPU kernels split a tensor's work over
    threads only beyond 32,768 elements, and the pieces then add up in another order;
    the library's worker pool runs one thread, as ``torch.set_num_threads(1)`` does here.

    **Standardising.** With ``standardize=True`` each call scales every feature of X
    and every output of a floating-point y to mean 0 and standard deviation 1 *on its
    training rows* (a constant feature is only centred), trains on the scaled data, and
    maps the predictions back before scoring, so the score is in y's units and no
    held-out row has seen its own statistics — scikit-learn's ``StandardScaler`` in a
    ``Pipeline``, with a ``TransformedTargetRegressor`` for y. An integer y (class
    labels) is left as it is. λ then acts on the weights of the standardised features.

    **Classification.** Class labels 0 … C−1 as an integer y, a model with C outputs,
    and ``loss=torch.nn.functional.cross_entropy``: the score is then the validation
    log loss (the mean cross-entropy), which λ is chosen to minimise.

    **The final model.** :meth:`fit` trains once more, at the chosen λ on every row,
    and returns the model.

    **Pickling.** The trainer is shipped to worker processes with its data, so
    ``model_factory``, ``loss`` and ``score`` must pickle: an ``nn.Module`` template of
    torch's own layers, a module-level function or class, :func:`functools.partial` of
    one (``partial(nn.Linear, 10, 1)``), or a loss module.

    **Checked at once.** The constructor builds one model and one optimizer, so a bad
    optimizer argument (a negative ``lr``, an unknown keyword) raises here, with the
    optimizer's own message, and not in the middle of a search.

    Args:
        model_factory: an ``nn.Module`` whose copy every call trains (so every fold and
            λ starts from its weights; it is never trained itself), or a callable
            returning a new ``nn.Module``. The model is moved to the device and floating
            dtype of ``X``.
        X: inputs, a tensor or array whose first dimension indexes the samples; finite
            (NaN or inf is refused, naming the first row that holds one).
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
        standardize: scale X, and a floating-point y, on each call's training rows
            (above).
    """

    def __init__(
        self,
        model_factory: nn.Module | Callable[[], nn.Module],
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
        standardize: bool = False,
    ) -> None:
        if not isinstance(model_factory, nn.Module) and not callable(model_factory):
            raise TypeError(
                "model_factory must be an nn.Module or a callable returning one, "
                f"got {type(model_factory).__name__}"
            )
        check_callable("loss", loss, allow_none=True)
        check_callable("score", score, allow_none=True)
        check_optimizer_class("optimizer", optimizer)
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
        for name, tensor in (("X", self.X), ("y", self.y)):
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                rows = torch.nonzero(~torch.isfinite(tensor.reshape(len(tensor), -1)).all(1))
                raise ValueError(
                    f"{name} contains NaN or infinite values (in {len(rows)} rows, the first "
                    f"row {int(rows[0])}); it must be finite: drop or impute those rows"
                )
        self.standardize = check_bool("standardize", standardize)
        if self.standardize and not self.X.is_floating_point():
            raise ValueError(f"standardize=True needs a floating-point X, got {self.X.dtype}")
        self.model_factory = model_factory
        self.loss = half_mean_squared_error if loss is None else loss
        if score is None:
            score = mean_squared_error if loss is None else loss
        self.score = score
        self.optimizer = optimizer
        self.optimizer_kwargs = optimizer_kwargs
        if decoupled_weight_decay is not None:
            self.optimizer_kwargs["decoupled_weight_decay"] = check_bool(
                "decoupled_weight_decay", decoupled_weight_decay
            )
        self.epochs = check_count("epochs", epochs, low=1)
        self.batch_size = None if batch_size is None else check_count("batch_size", batch_size)
        self.seed = check_count("seed", seed, low=0)
        self._decay_settings = self._probe_optimizer()

    def _probe_optimizer(self) -> _DecaySettings:
        """Build one model and optimizer now (bad arguments fail here); their decay settings."""
        with torch.random.fork_rng(devices=[]):
            model = self.new_model()
        group = self.optimizer(decay_groups(model, 0.0), **self.optimizer_kwargs).param_groups[0]
        return _DecaySettings(
            decoupled=bool(group.get("decoupled_weight_decay", False)),
            scaling=group.get("weight_decay_scaling", "lr"),
            lr=float(group["lr"]),
        )

    def __call__(self, lam: float, train_idx: Any, test_idx: Any) -> float:
        """Train at weight decay ``lam`` on ``train_idx``; the score on ``test_idx``, or inf."""
        train = torch.as_tensor(np.asarray(train_idx), dtype=torch.long)
        test = torch.as_tensor(np.asarray(test_idx), dtype=torch.long)
        data = self.fold_data(train)
        model = self._trained(lam, data, train)
        if model is None:
            return math.inf
        value = self._validation_score(model, data, test)
        return value if math.isfinite(value) else math.inf

    def training(self, lam: float, train_idx: Any, test_idx: Any) -> Iterator[float]:
        """The same training as a call, as a training function for
        :func:`l2optim.select_lambda_fast`: the score on ``test_idx`` after each epoch.

        After e epochs it yields exactly what ``FoldTrainer(..., epochs=e)`` returns;
        between two draws the run waits, its random state kept apart from the caller's.
        A diverged run yields ``inf`` once, and nothing after.
        """
        train = torch.as_tensor(np.asarray(train_idx), dtype=torch.long)
        test = torch.as_tensor(np.asarray(test_idx), dtype=torch.long)
        data = self.fold_data(train)
        with torch.random.fork_rng(devices=[]):
            model = self.new_model()
            optimizer = self.optimizer(decay_groups(model, float(lam)), **self.optimizer_kwargs)
            rng = torch.get_rng_state()
        order = torch.Generator().manual_seed(self.seed)
        for _ in range(self.epochs):
            # The run's own stream of random numbers (dropout) goes on where it stopped.
            with torch.random.fork_rng(devices=[]):
                torch.set_rng_state(rng)
                model.train()
                trained = self._train_epoch(model, optimizer, data, train, order)
                rng = torch.get_rng_state()
            if not trained:
                yield math.inf
                return
            value = self._validation_score(model, data, test)
            yield value if math.isfinite(value) else math.inf

    def fit(self, lam: float) -> nn.Module:
        """The model trained at weight decay ``lam`` on every row, in eval mode.

        The same training as one call on a fold, on all the samples. With
        ``standardize=True`` the returned module takes raw rows of X and predicts in y's
        units (its scaling from every row).

        Raises:
            FloatingPointError: the training loss became NaN or infinite.
        """
        rows = torch.arange(len(self.X))
        data = self.fold_data(rows)
        model = self._trained(lam, data, rows)
        if model is None:
            raise FloatingPointError(
                f"training at lambda={lam!r} diverged (a loss became NaN or infinite)"
            )
        if data.scaling is not None:
            model = Standardized(model, data.scaling)
        return model.eval()

    def default_bounds(self, n_train: int | None = None) -> tuple[float, float]:
        r"""A λ search interval for this optimizer and data, for ``n_train`` training rows.

        * Decoupled decay shrinks the weights by :math:`1 - s\lambda` per step (s = lr
          for the ``"lr"`` scaling, 1 for ``"schedule"`` at the base rate and ``"none"``),
          so :math:`s\lambda < 1`: the upper bound is :math:`0.5/s`, half the weights
          gone in one step. Over T optimizer steps the decay has a visible effect once
          :math:`s\lambda T` is not tiny: the lower bound is :math:`1/(100\,s\,T)`,
          :math:`T` = epochs × batches per epoch.
        * Coupled L2 adds :math:`\lambda\theta` to the gradient of a loss whose
          curvature along the data is up to L, the largest eigenvalue of
          :math:`X_c^\top X_c/n` (X flattened to one row per sample, standardised when
          the trainer standardises): the bounds are :math:`(10^{-5}L, 10L)`, from no
          shrinkage to nearly total for a linear model.

        Args:
            n_train: training rows per fit; default all the rows of X.
        """
        n_train = len(self.X) if n_train is None else check_count("n_train", n_train)
        settings = self._decay_settings
        if settings.decoupled:
            scale = settings.lr if settings.scaling == "lr" else 1.0
            steps = self.epochs * self.steps_per_epoch(n_train)
            return 1.0 / (100.0 * scale * steps), 0.5 / scale
        top = _largest_eigenvalue(self.X, self.standardize)
        return 1e-5 * top, 10.0 * top

    # -- the pieces of a call, for code that trains its runs another way (stacked) -----

    def new_model(self) -> nn.Module:
        """A fresh model with the initial weights every call starts from, in train mode.

        Built under ``seed`` and torch's own defaults, then moved: the same initial
        weights whatever the device of the data, and whatever default dtype or device
        this process set (a worker process starts with torch's). Seeds torch's global
        generator: call it inside :func:`torch.random.fork_rng` to keep the caller's.
        """
        torch.manual_seed(self.seed)
        with torch.device("cpu"), _default_dtype(torch.float32):
            if isinstance(self.model_factory, nn.Module):
                model = copy.deepcopy(self.model_factory)
            else:
                model = self.model_factory()
        model = model.to(device=self.X.device)
        if self.X.is_floating_point():
            model = model.to(dtype=self.X.dtype)
        return model.train()

    def steps_per_epoch(self, rows: int) -> int:
        """Optimizer steps in one epoch over ``rows`` training rows: one per mini-batch."""
        return 1 if self.batch_size is None else math.ceil(rows / self.batch_size)

    def fold_data(self, train: Tensor) -> FoldData:
        """X and y as the model sees them, scaled on the rows ``train`` when standardising.

        Args:
            train: the training rows (a long tensor of indices).
        """
        if not self.standardize:
            return FoldData(self.X, self.y, None)
        scaling = Scaling.of(self.X[train], self.y[train])
        return FoldData(scaling.inputs(self.X), scaling.targets(self.y), scaling)

    def _trained(self, lam: float, data: FoldData, train: Tensor) -> nn.Module | None:
        """A new model trained at ``lam`` on the rows ``train``; None if it diverged."""
        with torch.random.fork_rng(devices=[]):
            model = self.new_model()
            optimizer = self.optimizer(decay_groups(model, float(lam)), **self.optimizer_kwargs)
            if not self._train(model, optimizer, data, train):
                return None
        return model

    def _train(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, data: FoldData, train: Tensor
    ) -> bool:
        """Run the epochs; False as soon as a training loss is not finite."""
        order = torch.Generator().manual_seed(self.seed)
        return all(
            self._train_epoch(model, optimizer, data, train, order) for _ in range(self.epochs)
        )

    def _train_epoch(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data: FoldData,
        train: Tensor,
        order: torch.Generator,
    ) -> bool:
        """One epoch; False as soon as a training loss is not finite."""
        for batch in self.batches(train, order):
            optimizer.zero_grad(set_to_none=True)
            loss = self.training_loss(model(data.X[batch]), data.y[batch])
            if not torch.isfinite(loss).item():
                return False
            loss.backward()
            optimizer.step()
        return True

    def batches(self, train: Tensor, order: torch.Generator) -> Iterator[Tensor]:
        """One epoch's mini-batches of the rows ``train``, shuffled by ``order``.

        ``order`` is the run's own generator, seeded with ``seed`` once per run (every
        call makes one), so that runs continue their batch order across epochs.
        """
        if self.batch_size is None or self.batch_size >= len(train):
            yield train
            return
        shuffled = train[torch.randperm(len(train), generator=order)]
        yield from shuffled.split(self.batch_size)

    def training_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        """``loss`` of a batch, a width-1 head compared with a 1-D target as one column."""
        return self.loss(*_aligned(prediction, target))

    def validation_score(self, prediction: Tensor, target: Tensor) -> Tensor:
        """``score`` of predictions in y's units, aligned as :meth:`training_loss` aligns."""
        return self.score(*_aligned(prediction, target))

    def _validation_score(self, model: nn.Module, data: FoldData, test: Tensor) -> float:
        """``score`` of the predictions on ``test``, in y's units, against y."""
        model.eval()
        with torch.no_grad():
            prediction = model(data.X[test])
            if data.scaling is not None:
                prediction = data.scaling.predictions(prediction)
            return float(self.validation_score(prediction, self.y[test]))

    def __repr__(self) -> str:
        return (
            f"FoldTrainer(model_factory={self.model_factory!r}, n_samples={len(self.X)}, "
            f"loss={_name_of(self.loss)}, score={_name_of(self.score)}, "
            f"optimizer={self.optimizer.__name__}, optimizer_kwargs={self.optimizer_kwargs!r}, "
            f"epochs={self.epochs}, batch_size={self.batch_size}, seed={self.seed}, "
            f"standardize={self.standardize})"
        )


@dataclass(frozen=True)
class _DecaySettings:
    """How the optimizer decays: decoupled or not, its scaling, its base learning rate."""

    decoupled: bool
    scaling: str
    lr: float


@dataclass(frozen=True)
class Scaling:
    """Means and standard deviations of X's features and y's outputs over some rows
    (``None`` for y of class labels, left as they are).

    Attributes:
        x_mean, x_scale: per feature.
        y_mean, y_scale: per output of a floating-point y; ``None`` for class labels.
    """

    x_mean: Tensor
    x_scale: Tensor
    y_mean: Tensor | None
    y_scale: Tensor | None

    @classmethod
    def of(cls, x: Tensor, y: Tensor) -> Scaling:
        def mean_and_scale(values: Tensor) -> tuple[Tensor, Tensor]:
            sd = values.std(dim=0, unbiased=False)
            # A constant column is only centred, as scikit-learn's StandardScaler does.
            return values.mean(dim=0), torch.where(sd > 0, sd, torch.ones_like(sd))

        y_scaling = mean_and_scale(y) if y.is_floating_point() else (None, None)
        return cls(*mean_and_scale(x), *y_scaling)

    def inputs(self, x: Tensor) -> Tensor:
        return (x - self.x_mean) / self.x_scale

    def targets(self, y: Tensor) -> Tensor:
        return y if self.y_scale is None else (y - self.y_mean) / self.y_scale

    def predictions(self, scaled: Tensor) -> Tensor:
        """A prediction of the scaled target, in y's units."""
        return scaled if self.y_scale is None else scaled * self.y_scale + self.y_mean


@dataclass(frozen=True)
class FoldData:
    """The X and y a model trains and predicts on, and the scaling that made them.

    Attributes:
        X, y: every row, scaled on the training rows when the trainer standardises.
        scaling: that :class:`Scaling`, or ``None`` without standardising.
    """

    X: Tensor
    y: Tensor
    scaling: Scaling | None


class Standardized(nn.Module):
    """A model trained on standardised data, taking raw inputs and predicting in y's units:
    ``model((x - x_mean) / x_scale) * y_scale + y_mean``."""

    def __init__(self, model: nn.Module, scaling: Scaling) -> None:
        super().__init__()
        self.model = model
        for name in ("x_mean", "x_scale", "y_mean", "y_scale"):
            self.register_buffer(name, getattr(scaling, name))

    def forward(self, x: Tensor) -> Tensor:
        prediction = self.model((x - self.x_mean) / self.x_scale)
        if self.y_scale is None:
            return prediction  # class scores: y was not scaled
        if prediction.ndim == self.y_mean.ndim + 2 and prediction.shape[-1] == 1:
            prediction = prediction.squeeze(-1)  # a head of width 1 for a 1-D target
        return prediction * self.y_scale + self.y_mean


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def _aligned(prediction: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """A regression head of width 1 against targets of shape (n,): compared as (n,), not
    broadcast to (n, n)."""
    if prediction.ndim == target.ndim + 1 and prediction.shape[-1] == 1:
        prediction = prediction.squeeze(-1)
    return prediction, target


def _largest_eigenvalue(x: Tensor, standardize: bool, iterations: int = 100) -> float:
    """L, the largest eigenvalue of XcᵀXc/n (rows flattened), by power iteration; 1 if 0."""
    rows = x.reshape(len(x), -1).to(torch.float64)
    rows = rows - rows.mean(dim=0)
    if standardize:
        sd = rows.std(dim=0, unbiased=False)
        rows = rows / torch.where(sd > 0, sd, torch.ones_like(sd))
    # A fixed random start: never orthogonal to the top eigenvector by construction.
    start = torch.randn(rows.shape[1], generator=torch.Generator().manual_seed(0),
                        dtype=rows.dtype)
    vector = start.to(rows.device)
    top = 0.0
    for _ in range(iterations):
        image = rows.T @ (rows @ vector) / len(rows)
        top = float(image.norm())
        if top == 0:
            return 1.0
        vector = image / top
    return top


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
