r"""Conversions between weight-decay conventions.

Every function here is pure arithmetic on Python numbers. The conventions:

* **coupled** λ_c: the gradient becomes g + λ_c·θ (``decoupled_weight_decay=False``);
* **decoupled** λ: θ ← θ·(1 − s_t·λ) before the base update, s_t set by
  ``weight_decay_scaling`` (``"lr"``: s_t = lr_t; ``"schedule"``: s_t = lr_t/lr_ref;
  ``"corrected"``: s_t = lr_t²/lr_ref; ``"none"``: s_t = 1);
* **torch's** λ: the decoupled λ with ``"lr"`` scaling, the one ``torch.optim.AdamW`` takes;
* **the paper's** λ (Loshchilov & Hutter, "Decoupled Weight Decay Regularization",
  ICLR 2019): θ ← θ − η_t·(α·u_t + λ·θ), η_t the schedule multiplier and α the base
  learning rate; it is the decoupled λ with ``"schedule"`` scaling.

Notation, as on the documentation's Conventions page: μ the momentum, d the dampening,
N the number of training samples, b the batch size, T the number of epochs.

Examples:
    >>> from l2optim import conversions
    >>> conversions.coupled_from_decoupled(1e-3, lr=0.1, momentum=0.5)
    0.0005
    >>> conversions.torch_from_paper(0.025, lr=1e-3)
    25.0
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

from l2optim._validation import (
    check_count,
    check_fraction,
    check_non_negative,
    check_positive,
)
from l2optim.optimizers import check_weight_decay_scaling, decay_scale

__all__ = [
    "Timescale",
    "TrainingRun",
    "adamw_timescale",
    "coupled_from_decoupled",
    "decoupled_from_coupled",
    "normalized_weight_decay",
    "paper_from_torch",
    "torch_from_paper",
    "transfer_weight_decay",
    "weight_decay_from_normalized",
    "weight_decay_from_timescale",
]


def _batch_fraction(batch_size: int, n_samples: int) -> float:
    """b/N, the fraction of the training set one step sees."""
    samples = check_count("n_samples", n_samples)
    batch = check_count("batch_size", batch_size, high=samples, high_name="n_samples")
    return batch / samples


# -- coupled ⇄ decoupled for SGD ------------------------------------------------------------


def _lr_ref_renamed(lr_ref: float | None, initial_lr: float | None) -> float | None:
    """``lr_ref``, or ``initial_lr``, its old name, with a deprecation warning."""
    if initial_lr is None:
        return lr_ref
    if lr_ref is not None:
        raise TypeError("give lr_ref only: initial_lr is its old, deprecated name")
    warnings.warn(
        "initial_lr is deprecated and will be removed: pass lr_ref, the name the optimizers "
        "and their param groups use for the reference learning rate of 'schedule'",
        DeprecationWarning,
        stacklevel=3,
    )
    return initial_lr


def _coupled_per_decoupled(
    lr: float | None,
    momentum: float,
    dampening: float,
    weight_decay_scaling: str,
    lr_ref: float | None,
) -> float:
    r"""The ratio λ_c/λ = s·(1 − μ) / (lr·(1 − d)), arguments checked.

    The learning rate cancels for ``"lr"`` (s = lr) and for ``"schedule"`` with
    ``lr_ref`` given (s = lr/lr_ref); it is needed otherwise (``"corrected"``: s =
    lr²/lr_ref; ``"none"``: s = 1).
    """
    momentum = check_fraction("momentum", momentum)
    dampening = check_fraction("dampening", dampening)
    check_weight_decay_scaling(weight_decay_scaling, decoupled=True)
    if momentum == 0:
        dampening = 0.0  # torch's SGD keeps no buffer then, and ignores dampening
    ratio = (1 - momentum) / (1 - dampening)
    lr = None if lr is None else check_positive("lr", lr)
    if lr_ref is not None:
        lr_ref = check_positive("lr_ref", lr_ref)
    if weight_decay_scaling == "lr":
        return ratio
    if weight_decay_scaling == "schedule" and lr_ref is not None:
        return ratio / lr_ref
    if lr is None:
        unless = " unless lr_ref is given" if weight_decay_scaling == "schedule" else ""
        raise TypeError(
            f"lr is needed with weight_decay_scaling={weight_decay_scaling!r}{unless}: "
            "the ratio s·(1 - momentum)/(lr·(1 - dampening)) keeps it"
        )
    start_lr = lr if lr_ref is None else lr_ref
    return decay_scale(weight_decay_scaling, lr, start_lr) * ratio / lr


def coupled_from_decoupled(
    weight_decay: float,
    *,
    lr: float | None = None,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay_scaling: str = "lr",
    lr_ref: float | None = None,
    initial_lr: float | None = None,
) -> float:
    r"""The coupled λ_c whose SGD fixed point is that of decoupled SGD with λ.

    Torch's SGD keeps a buffer m_t = μ·m_{t−1} + (1 − d)·g_t and steps θ ← θ − lr·m_t
    (with Nesterov, θ ← θ − lr·(g_t + μ·m_t), where torch requires d = 0). Decoupled
    decay first shrinks θ ← θ·(1 − s·λ). At a fixed point at constant lr,
    m = (1 − d)·g/(1 − μ) (with Nesterov, g + μ·m = g/(1 − μ), the same when d = 0)
    and s·λ·θ = −lr·m, so g + λ_c·θ = 0 with

    .. math::
        \lambda_c = \frac{s\,\lambda\,(1-\mu)}{\mathrm{lr}\,(1-d)},

    that is, the stationarity condition of the loss plus (λ_c/2)·‖θ‖². By scaling:

    * ``"lr"`` (s = lr): λ_c = λ·(1 − μ)/(1 − d); without momentum λ_c = λ, and the
      two forms are the same update, step for step;
    * ``"schedule"`` (s = lr/lr_ref): λ_c = λ·(1 − μ)/(lr_ref·(1 − d)); the
      constant lr cancels;
    * ``"corrected"`` (s = lr²/lr_ref): λ_c = λ·lr·(1 − μ)/(lr_ref·(1 − d));
    * ``"none"`` (s = 1): λ_c = λ·(1 − μ)/(lr·(1 − d)).

    Without momentum torch's SGD keeps no buffer and ignores d; so does this function.
    The trajectories of the two forms differ whenever μ > 0; only the fixed point is
    shared. Adam and RMSprop have no such equivalent: full batch, their decoupled
    form approaches a box-constrained least-squares solution (‖θ‖∞ ≤ 1/λ for Adam and
    plain RMSprop with the default scaling; 1/((1 − μ)·λ) for RMSprop with momentum;
    none for centred RMSprop), not a ridge solution.

    Args:
        weight_decay: the decoupled λ, >= 0.
        lr: the constant learning rate at which the fixed point is reached, > 0. It
            cancels, and may be left out, for ``"lr"``, and for ``"schedule"`` when
            ``lr_ref`` is given; ``"corrected"`` and ``"none"`` need it.
        momentum: μ, in [0, 1).
        dampening: d, in [0, 1); ignored when ``momentum`` is 0, as torch ignores it.
        weight_decay_scaling: ``"lr"``, ``"schedule"``, ``"corrected"`` or ``"none"``, as
            for the optimizers.
        lr_ref: the reference learning rate of ``"schedule"`` (s = lr/lr_ref) and
            ``"corrected"`` (s = lr²/lr_ref, lr_ref the schedule's peak); no other scaling
            reads it. The param group's ``lr_ref`` entry in the optimizers: by default the
            lr the group was created with. > 0; defaults to ``lr``, as when no scheduler
            changed it.
        initial_lr: the old name of ``lr_ref``, deprecated (a ``DeprecationWarning``).

    Returns:
        λ_c, the ``weight_decay`` of ``l2optim.SGD`` with the default coupled form.

    Raises:
        TypeError: ``lr`` left out where it does not cancel, or an argument that is not
            a real number.
        ValueError: an argument out of its range.
    """
    decoupled = check_non_negative("weight_decay", weight_decay)
    lr_ref = _lr_ref_renamed(lr_ref, initial_lr)
    ratio = _coupled_per_decoupled(lr, momentum, dampening, weight_decay_scaling, lr_ref)
    return decoupled * ratio


def decoupled_from_coupled(
    weight_decay: float,
    *,
    lr: float | None = None,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay_scaling: str = "lr",
    lr_ref: float | None = None,
    initial_lr: float | None = None,
) -> float:
    r"""The decoupled λ whose SGD fixed point is that of coupled SGD with λ_c.

    The inverse of :func:`coupled_from_decoupled`:

    .. math::
        \lambda = \frac{\lambda_c\,\mathrm{lr}\,(1-d)}{s\,(1-\mu)},

    with s = lr (``"lr"``), lr/lr_ref (``"schedule"``), lr²/lr_ref (``"corrected"``) or 1
    (``"none"``).

    Args:
        weight_decay: the coupled λ_c, >= 0.
        lr, momentum, dampening, weight_decay_scaling, lr_ref, initial_lr: as in
            :func:`coupled_from_decoupled`.

    Returns:
        λ, the ``weight_decay`` of ``l2optim.SGD`` with ``decoupled_weight_decay=True``.
    """
    coupled = check_non_negative("weight_decay", weight_decay)
    lr_ref = _lr_ref_renamed(lr_ref, initial_lr)
    ratio = _coupled_per_decoupled(lr, momentum, dampening, weight_decay_scaling, lr_ref)
    return coupled / ratio


# -- torch ⇄ paper ---------------------------------------------------------------------


def torch_from_paper(weight_decay: float, *, lr: float) -> float:
    r"""Torch's λ from the λ of Loshchilov & Hutter (ICLR 2019).

    The paper decays by η_t·λ per step, η_t the schedule multiplier; torch decays by
    lr_t·λ_torch with lr_t = η_t·α, α the base learning rate. Equal decay per step:

    .. math::
        \lambda_{\text{torch}} = \lambda_{\text{paper}} / \alpha.

    ``weight_decay_scaling="schedule"`` takes the paper's λ as it is.

    Args:
        weight_decay: the paper's λ, >= 0.
        lr: α, the base learning rate (torch's lr where η_t = 1), > 0.
    """
    return check_non_negative("weight_decay", weight_decay) / check_positive("lr", lr)


def paper_from_torch(weight_decay: float, *, lr: float) -> float:
    r"""The λ of Loshchilov & Hutter (ICLR 2019) from torch's λ.

    The inverse of :func:`torch_from_paper`:
    :math:`\lambda_{\text{paper}} = \alpha\,\lambda_{\text{torch}}`.

    Args:
        weight_decay: torch's λ (``torch.optim.AdamW``'s ``weight_decay``), >= 0.
        lr: α, the base learning rate (torch's lr where η_t = 1), > 0.
    """
    return check_non_negative("weight_decay", weight_decay) * check_positive("lr", lr)


# -- normalised weight decay -----------------------------------------------------------


def _normalization(batch_size: int, n_samples: int, n_epochs: float) -> float:
    """√(b/(N·T)), arguments checked."""
    fraction = _batch_fraction(batch_size, n_samples)
    return math.sqrt(fraction / check_positive("n_epochs", n_epochs))


def weight_decay_from_normalized(
    weight_decay_norm: float, *, batch_size: int, n_samples: int, n_epochs: float
) -> float:
    r"""λ from the normalised weight decay of Loshchilov & Hutter (ICLR 2019, appendix).

    .. math::
        \lambda = \lambda_{\text{norm}} \sqrt{\frac{b}{N\,T}},

    b the batch size, N the number of training points and T the number of epochs,
    so that one λ_norm suits runs of any length and batch size. λ is the paper's
    (decay η_t·λ per step; see :func:`torch_from_paper`).

    Args:
        weight_decay_norm: λ_norm, >= 0.
        batch_size: b, an integer in [1, n_samples].
        n_samples: N, a positive integer.
        n_epochs: T, > 0 (a fraction of an epoch is allowed).
    """
    norm = check_non_negative("weight_decay_norm", weight_decay_norm)
    return norm * _normalization(batch_size, n_samples, n_epochs)


def normalized_weight_decay(
    weight_decay: float, *, batch_size: int, n_samples: int, n_epochs: float
) -> float:
    r"""The normalised weight decay λ_norm of λ (Loshchilov & Hutter, ICLR 2019, appendix).

    The inverse of :func:`weight_decay_from_normalized`:

    .. math::
        \lambda_{\text{norm}} = \lambda \sqrt{\frac{N\,T}{b}}.

    Args:
        weight_decay: λ, the paper's, >= 0.
        batch_size, n_samples, n_epochs: as in :func:`weight_decay_from_normalized`.
    """
    decay = check_non_negative("weight_decay", weight_decay)
    return decay / _normalization(batch_size, n_samples, n_epochs)


# -- AdamW time scale ------------------------------------------------------------------


@dataclass(frozen=True)
class Timescale:
    """The time scale of AdamW's weight average, in both units it is quoted in.

    Attributes:
        iterations: τ_iter = 1/(η·λ), in optimizer steps.
        epochs: τ_epoch = τ_iter·b/N, in passes over the data; ``None`` when the batch
            size and the number of samples were not given.
    """

    iterations: float
    epochs: float | None = None


def adamw_timescale(
    weight_decay: float,
    *,
    lr: float,
    batch_size: int | None = None,
    n_samples: int | None = None,
) -> Timescale:
    r"""The time scale of AdamW's weight average (Wang & Aitchison, 2024).

    With torch's convention θ ← (1 − η·λ)·θ − η·u_t, the weights are an exponential
    moving average of the updates over

    .. math::
        \tau_{\text{iter}} = \frac{1}{\eta\,\lambda}
        \quad\text{iterations, or}\quad
        \tau_{\text{epoch}} = \tau_{\text{iter}}\,\frac{b}{N}
        \quad\text{epochs}

    for batch size b and N training samples. Wang & Aitchison, "How to set AdamW's
    weight decay as you scale model and dataset size" (arXiv:2405.13698) find the best
    τ_epoch nearly constant as models and data grow. For
    ``weight_decay_scaling="none"`` pass ``lr=1``.

    Args:
        weight_decay: torch's λ, > 0.
        lr: η, the learning rate, > 0.
        batch_size: b, an integer in [1, n_samples]; give it with ``n_samples`` for
            τ_epoch.
        n_samples: N, the number of training points.

    Returns:
        A :class:`Timescale` with ``iterations`` and, when ``batch_size`` and
        ``n_samples`` are given, ``epochs``: two numbers for one run, each named by its
        unit.
    """
    decay = check_positive("weight_decay", weight_decay)
    iterations = 1 / (check_positive("lr", lr) * decay)
    steps = _steps_per_epoch(batch_size, n_samples)
    return Timescale(iterations, None if steps is None else iterations / steps)


def _steps_per_epoch(batch_size: int | None, n_samples: int | None) -> float | None:
    """N/b, or None when neither is given."""
    if batch_size is None and n_samples is None:
        return None
    if batch_size is None or n_samples is None:
        raise ValueError(
            "batch_size and n_samples go together: give both for a time scale in epochs"
        )
    return 1 / _batch_fraction(batch_size, n_samples)


def weight_decay_from_timescale(
    *,
    lr: float,
    iterations: float | None = None,
    epochs: float | None = None,
    batch_size: int | None = None,
    n_samples: int | None = None,
) -> float:
    r"""Torch's λ that gives AdamW a chosen time scale (Wang & Aitchison, 2024).

    The inverse of :func:`adamw_timescale`:

    .. math::
        \lambda = \frac{1}{\eta\,\tau_{\text{iter}}},
        \qquad \tau_{\text{iter}} = \tau_{\text{epoch}}\,\frac{N}{b}.

    Args:
        lr: η, the learning rate, > 0.
        iterations: τ_iter, in optimizer steps, > 0; or
        epochs: τ_epoch, in passes over the data, > 0, with ``batch_size`` and
            ``n_samples``.
        batch_size, n_samples: b and N, as in :func:`adamw_timescale`.

    Raises:
        TypeError: neither or both of ``iterations`` and ``epochs``; ``epochs``
            without ``batch_size`` and ``n_samples``.
    """
    if (iterations is None) == (epochs is None):
        raise TypeError("give exactly one of iterations or epochs")
    steps = _steps_per_epoch(batch_size, n_samples)
    if epochs is not None:
        if steps is None:
            raise TypeError("epochs needs batch_size and n_samples, to count steps per epoch")
        tau = check_positive("epochs", epochs) * steps
    else:
        tau = check_positive("iterations", iterations)
    return 1 / (check_positive("lr", lr) * tau)


# -- moving λ to another run at the same time scale ------------------------------------------

# What transfer_weight_decay keeps fixed.
_TRANSFER_KEEPS = ("epochs", "iterations", "run_fraction")


@dataclass(frozen=True)
class TrainingRun:
    """One training setup, each quantity named with its unit.

    Attributes:
        lr: η, the (peak) learning rate, > 0.
        batch_size: b, samples per optimizer step, an integer in [1, n_samples].
        n_samples: N, training samples, an integer ≥ 1.
        steps: T, optimizer steps of the whole run, an integer ≥ 1.

    Only ``lr`` is always needed; :func:`transfer_weight_decay` says which others its
    ``keep`` reads.
    """

    lr: float
    batch_size: int | None = None
    n_samples: int | None = None
    steps: int | None = None

    def __post_init__(self) -> None:
        check_positive("lr", self.lr)
        if self.n_samples is not None:
            check_count("n_samples", self.n_samples)
        if self.batch_size is not None:
            high = None if self.n_samples is None else int(self.n_samples)
            check_count("batch_size", self.batch_size, high=high, high_name="n_samples")
        if self.steps is not None:
            check_count("steps", self.steps)


def transfer_weight_decay(
    weight_decay: float, *, source: TrainingRun, target: TrainingRun, keep: str = "epochs"
) -> float:
    r"""Torch's λ for ``target`` that keeps the time scale λ had in ``source``.

    With torch's convention (decoupled, ``weight_decay_scaling="lr"``: θ ← (1 − η·λ)·θ − …)
    the weights average the updates over τ_iter = 1/(η·λ) steps
    (:func:`adamw_timescale`). Keeping

    * ``"epochs"``: τ_epoch = τ_iter·b/N, passes over the data (Wang & Aitchison 2024,
      "How to set AdamW's weight decay as you scale model and dataset size", find the
      best τ_epoch nearly constant as models and data grow):
      λ' = λ·(η/η')·(b'/b)·(N/N');
    * ``"iterations"``: τ_iter, steps: λ' = λ·η/η';
    * ``"run_fraction"``: τ_iter/T, the share of the run the average spans:
      λ' = λ·(η/η')·(T/T').

    Args:
        weight_decay: λ in ``source``, torch's (``torch.optim.AdamW``'s ``weight_decay``,
            l2optim's decoupled λ with the ``"lr"`` scaling), ≥ 0. For ``"schedule"``'s
            λ, convert it first: torch's is λ/lr_ref (:func:`torch_from_paper`).
        source, target: the two :class:`TrainingRun`; ``"epochs"`` reads ``lr``,
            ``batch_size`` and ``n_samples`` of both, ``"run_fraction"`` ``lr`` and
            ``steps``, ``"iterations"`` ``lr`` only.
        keep: ``"epochs"``, ``"iterations"`` or ``"run_fraction"``.

    Returns:
        λ' for ``target``, in the same convention.

    Examples:
        >>> from l2optim.conversions import TrainingRun, transfer_weight_decay
        >>> small = TrainingRun(lr=1e-3, batch_size=256, n_samples=50_000)
        >>> large = TrainingRun(lr=1e-3, batch_size=256, n_samples=500_000)
        >>> round(transfer_weight_decay(0.1, source=small, target=large), 6)  # 10× the data
        0.01
    """
    decay = check_non_negative("weight_decay", weight_decay)
    if keep not in _TRANSFER_KEEPS:
        raise ValueError(
            f"keep must be one of {', '.join(repr(k) for k in _TRANSFER_KEEPS)}, got {keep!r}"
        )
    for name, run in (("source", source), ("target", target)):
        if not isinstance(run, TrainingRun):
            raise TypeError(f"{name} must be a TrainingRun, got {type(run).__name__}")
    ratio = source.lr / target.lr
    if keep == "epochs":
        needed = ("batch_size", "n_samples")
        (batch, n), (batch_to, n_to) = _read(source, needed, keep), _read(target, needed, keep)
        ratio *= (batch_to / batch) * (n / n_to)
    elif keep == "run_fraction":
        (steps,), (steps_to,) = _read(source, ("steps",), keep), _read(target, ("steps",), keep)
        ratio *= steps / steps_to
    return decay * ratio


def _read(run: TrainingRun, names: tuple[str, ...], keep: str) -> list[int]:
    missing = [name for name in names if getattr(run, name) is None]
    if missing:
        raise TypeError(
            f"keep={keep!r} needs {' and '.join(names)} of both runs; {run} has no "
            f"{' or '.join(missing)}"
        )
    return [int(getattr(run, name)) for name in names]
