"""The base updates of the families, as functions of tensor lists, for use outside an optimizer.

Stacked training (:mod:`l2optim.selection`) trains many copies of one model at once,
each copy's parameters stacked along a new first dimension, and steps them with the
same arithmetic the optimizer class would apply to one copy: the decay rule with each
copy's λ (``decoupled_factor``, ``shrink``, ``add_coupled_decay``), then the family's
base update with λ = 0, which is torch's own single-tensor update (``torch.optim.sgd.sgd``
and its siblings). Each family registers its :class:`FunctionalUpdate`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

__all__ = ["FunctionalUpdate", "functional_update", "register_functional"]


class FunctionalUpdate:
    """One family's base update with λ = 0, on lists of tensors.

    Attributes:
        settings: the hyperparameters the update reads (``lr``, ``momentum``, …), as
            Python numbers and bools.
    """

    #: The param-group entries the update reads.
    settings_read: frozenset[str] = frozenset()

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = {key: settings[key] for key in self.settings_read}

    def new_state(self, param: Tensor) -> dict[str, Tensor]:
        """The state of one parameter before its first step (torch's, without ``step``)."""
        return {}

    def step(
        self,
        params: Sequence[Tensor],
        grads: Sequence[Tensor],
        states: Sequence[dict[str, Tensor]],
        step: int,
    ) -> None:
        """One update of every parameter in place; ``step`` counts from 1."""
        raise NotImplementedError


_FUNCTIONAL: dict[type[torch.optim.Optimizer], type[FunctionalUpdate]] = {}


def register_functional(base: type[torch.optim.Optimizer], update: type[FunctionalUpdate]) -> None:
    """Say that ``update`` is the base update of ``base`` and of its subclasses."""
    _FUNCTIONAL[base] = update


def functional_update(optimizer: torch.optim.Optimizer, group: int = 0) -> FunctionalUpdate:
    """The base update of ``optimizer``'s param group ``group``, with its settings.

    Raises:
        TypeError: ``optimizer`` is not an SGD, Adam or RMSprop (torch's classes,
            l2optim's and their W variants are).
    """
    for base, update in _FUNCTIONAL.items():
        if isinstance(optimizer, base):
            return update(optimizer.param_groups[group])
    raise TypeError(
        "the base updates are those of SGD, Adam and RMSprop (l2optim's classes and their "
        f"W variants, or torch's); got optimizer={type(optimizer).__name__}"
    )
