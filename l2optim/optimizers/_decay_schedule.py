"""Weight decay on a schedule: λ_t set per step, as torch's lr schedulers set the lr.

A scheduler writes each param group's ``weight_decay`` and nothing else, so every path a
step can take (loop, foreach, fused kernels, compiled and Triton updates) reads the λ of
the step it runs, in the form (coupled or decoupled) and scaling the group has. λ_t is
the group's ``initial_weight_decay`` (the ``weight_decay`` it had when the first
scheduler was made, kept in the group and so in the optimizer's ``state_dict``) times
the schedule's value at step t, like torch's ``initial_lr``.

A resumed run is the uninterrupted run: ``load_state_dict`` writes the λ of the step it
restores back into the groups, so the first step after a resume uses the λ it would have
used, whichever of the optimizer and the scheduler is loaded first.
"""

from __future__ import annotations

import math
import types
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from l2optim._validation import check_count, check_non_negative
from l2optim.optimizers._rule import check_weight_decay

__all__ = ["CosineWeightDecay", "LambdaWeightDecay", "WeightDecayScheduler"]


def _initial(group: dict[str, Any]) -> float:
    """λ₀: the group's ``initial_weight_decay``, or its ``weight_decay`` before any schedule."""
    return float(group.get("initial_weight_decay", group["weight_decay"]))


def _check_optimizer(optimizer: Any) -> None:
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )


class WeightDecayScheduler:
    """Base class: sets every param group's ``weight_decay`` at each :meth:`step`.

    Subclasses define :meth:`get_weight_decay`, the λ of each group at step
    ``last_epoch``. It works beside torch's lr schedulers (step both after
    ``optimizer.step()``) and inside ``torch.optim.lr_scheduler.ChainedScheduler``.

    Args:
        optimizer: any ``torch.optim.Optimizer`` whose groups have ``weight_decay``.
        last_epoch: the index of the last step taken, -1 for a new run (as torch's
            schedulers count); a resumed run needs ``initial_weight_decay`` in its groups.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, last_epoch: int = -1) -> None:
        _check_optimizer(optimizer)
        for i, group in enumerate(optimizer.param_groups):
            if "weight_decay" not in group:
                raise KeyError(f"param_groups[{i}] has no 'weight_decay' entry to schedule")
            if last_epoch == -1:
                initial = group["weight_decay"]
                group.setdefault(
                    "initial_weight_decay",
                    float(initial) if isinstance(initial, Tensor) else initial,
                )
            elif "initial_weight_decay" not in group:
                raise KeyError(
                    f"param_groups[{i}] has no 'initial_weight_decay' entry: resuming with "
                    f"last_epoch={last_epoch} needs the optimizer's state_dict loaded first"
                )
        self.optimizer = optimizer
        self.base_weight_decays = [g["initial_weight_decay"] for g in optimizer.param_groups]
        self.last_epoch = last_epoch
        self._last_weight_decay: list[float] = []
        self.step()

    def get_weight_decay(self) -> list[float]:
        """The λ of each param group at step ``last_epoch``."""
        raise NotImplementedError

    def step(self) -> None:
        """Move to the next step and write its λ into the param groups."""
        self.last_epoch += 1
        try:
            self._write(self.get_weight_decay())
        except Exception:
            self.last_epoch -= 1  # a refused step leaves the schedule where it was
            raise

    def get_last_weight_decay(self) -> list[float]:
        """The λ written by the last :meth:`step`, one per param group."""
        return list(self._last_weight_decay)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the optimizer (and functions, which do not pickle reliably)."""
        return {
            k: v for k, v in self.__dict__.items() if k != "optimizer" and not callable(v)
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the schedule, and the λ of the step it restores into the groups.

        A state that does not fit the optimizer (another number of groups) is refused
        and the scheduler is left as it was.
        """
        kept = dict(self.__dict__)
        self.__dict__.update(state_dict)
        try:
            self._write(self._last_weight_decay)
        except Exception:
            self.__dict__.clear()
            self.__dict__.update(kept)
            raise

    def _write(self, values: list[float]) -> None:
        groups = self.optimizer.param_groups
        if len(values) != len(groups):
            raise ValueError(
                f"{type(self).__name__} has {len(values)} weight decays for "
                f"{len(groups)} param groups"
            )
        for i, value in enumerate(values):
            check_weight_decay(f"scheduled weight_decay of param group {i}", value)
        for group, value in zip(groups, values, strict=True):
            if isinstance(group["weight_decay"], Tensor):
                # In place, as torch's schedulers write a tensor lr: a compiled step
                # that reads the tensor is not recompiled for each new value.
                group["weight_decay"].fill_(value)
            else:
                group["weight_decay"] = value
        self._last_weight_decay = [float(v) for v in values]


class LambdaWeightDecay(WeightDecayScheduler):
    """λ_t = λ₀ · ``weight_decay_lambda(t)``, one function or one per param group.

    Example:
        >>> import torch, l2optim
        >>> opt = l2optim.AdamW([torch.zeros(2, requires_grad=True)], weight_decay=0.1)
        >>> warm_up = l2optim.LambdaWeightDecay(opt, lambda t: min(1.0, (t + 1) / 4))
        >>> seen = []
        >>> for _ in range(5):  # opt.step() would run here, with this weight_decay
        ...     seen.append(round(opt.param_groups[0]["weight_decay"], 3))
        ...     warm_up.step()
        >>> seen
        [0.025, 0.05, 0.075, 0.1, 0.1]
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        weight_decay_lambda: Callable[[int], float] | list[Callable[[int], float]],
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        functions = (
            list(weight_decay_lambda)
            if isinstance(weight_decay_lambda, (list, tuple))
            else [weight_decay_lambda] * len(optimizer.param_groups)
        )
        if len(functions) != len(optimizer.param_groups) or not all(map(callable, functions)):
            raise ValueError(
                f"weight_decay_lambda must be a function or a list of "
                f"{len(optimizer.param_groups)} functions (one per param group), got "
                f"{weight_decay_lambda!r}"
            )
        self.weight_decay_lambdas = functions
        super().__init__(optimizer, last_epoch)

    def get_weight_decay(self) -> list[float]:
        return [
            base * f(self.last_epoch)
            for base, f in zip(self.base_weight_decays, self.weight_decay_lambdas, strict=True)
        ]

    def state_dict(self) -> dict[str, Any]:
        """As the base class, with each callable object's attributes (``None`` for a plain
        function, which the constructor gives again), as torch's ``LambdaLR`` keeps them."""
        state = super().state_dict()
        state["weight_decay_lambdas"] = [
            None if isinstance(f, types.FunctionType) else dict(vars(f))
            for f in self.weight_decay_lambdas
        ]
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        saved = state.pop("weight_decay_lambdas", None) or []
        if saved and len(saved) != len(self.weight_decay_lambdas):
            raise ValueError(
                f"the state_dict holds {len(saved)} weight_decay_lambda states for "
                f"{len(self.weight_decay_lambdas)} functions; nothing was loaded"
            )
        super().load_state_dict(state)
        for f, attributes in zip(self.weight_decay_lambdas, saved, strict=False):
            if attributes is not None:
                vars(f).update(attributes)


class CosineWeightDecay(WeightDecayScheduler):
    """λ moves from λ₀ to ``final_weight_decay`` along a half cosine over ``total_steps``.

    .. math::
        \\lambda_t = \\lambda_{\\text{final}} + (\\lambda_0 - \\lambda_{\\text{final}})
        \\,\\frac{1 + \\cos(\\pi \\min(t, T)/T)}{2}

    DINO's schedule rises (λ₀ = 0.04 to 0.4); a falling one works alike. After T steps λ
    stays at ``final_weight_decay``. A group whose λ₀ is 0 (the biases and norms that
    :func:`l2optim.decay_groups` exempts) stays at 0 unless a list gives it a final λ.

    Args:
        optimizer: the optimizer; λ₀ is each group's ``weight_decay``.
        final_weight_decay: λ at step T, ≥ 0; one number for every group whose λ₀ is not
            0, or one per group.
        total_steps: T, ≥ 1.
        last_epoch: as for :class:`WeightDecayScheduler`.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        final_weight_decay: float | list[float],
        total_steps: int,
        last_epoch: int = -1,
    ) -> None:
        _check_optimizer(optimizer)
        finals = (
            list(final_weight_decay)
            if isinstance(final_weight_decay, (list, tuple))
            else [
                0.0 if _initial(group) == 0 else final_weight_decay
                for group in optimizer.param_groups
            ]
        )
        if len(finals) != len(optimizer.param_groups):
            raise ValueError(
                f"final_weight_decay must be one number or {len(optimizer.param_groups)} "
                f"(one per param group), got {len(finals)}"
            )
        self.final_weight_decays = [check_non_negative("final_weight_decay", f) for f in finals]
        self.total_steps = check_count("total_steps", total_steps, low=1)
        super().__init__(optimizer, last_epoch)

    def get_weight_decay(self) -> list[float]:
        progress = min(self.last_epoch, self.total_steps) / self.total_steps
        weight = (1 + math.cos(math.pi * progress)) / 2
        return [
            # Weighted so that λ₀ and the final λ come out exactly at the ends.
            base * weight + final * (1 - weight)
            for base, final in zip(self.base_weight_decays, self.final_weight_decays, strict=True)
        ]
