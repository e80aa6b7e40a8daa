"""Both forms of weight decay for any other ``torch.optim.Optimizer``."""

from __future__ import annotations

import copyreg
import inspect
from typing import Any, TypeVar

import torch

from l2optim._validation import check_optimizer_class
from l2optim.optimizers import _rule
from l2optim.optimizers._mixin import WEIGHT_DECAY_ARGS, WeightDecayMixin

__all__ = ["with_weight_decay"]

_Optimizer = TypeVar("_Optimizer", bound=torch.optim.Optimizer)


def with_weight_decay(optimizer_class: type[_Optimizer]) -> type[_Optimizer]:
    """A subclass of ``optimizer_class`` that offers both forms of weight decay.

    The subclass takes the base's arguments plus keyword-only ``decoupled_weight_decay``
    and ``weight_decay_scaling`` (and ``weight_decay`` if the base has none). The decay
    is applied here, before the base update, in both forms; the base always sees a
    ``weight_decay`` of 0, so the base's own meaning of it does not matter.

    The same base always gives the same class, and the class and its instances pickle
    (``torch.save(optimizer)``, ``copy.deepcopy``, skorch): unpickling makes the class
    again from its base.

    The closure, if given, is evaluated once before the update: optimizers that call
    it several times per step (LBFGS) are not supported.

    Example:
        >>> AdagradW = l2optim.with_weight_decay(torch.optim.Adagrad)
        >>> model = torch.nn.Linear(4, 1)
        >>> opt = AdagradW(model.parameters(), lr=0.1, weight_decay=1e-2,
        ...                decoupled_weight_decay=True)
        >>> isinstance(opt, torch.optim.Adagrad), AdagradW is l2optim.with_weight_decay(torch.optim.Adagrad)
        (True, True)
    """
    check_optimizer_class("optimizer_class", optimizer_class)
    if issubclass(optimizer_class, torch.optim.LBFGS):
        raise TypeError(
            "LBFGS re-evaluates its closure within a step; it cannot take weight decay here"
        )
    made = _WITH_WEIGHT_DECAY.get(optimizer_class)
    if made is None:
        made = _WITH_WEIGHT_DECAY[optimizer_class] = _make_with_weight_decay(optimizer_class)
    return made


#: The classes :func:`with_weight_decay` made, by base.
_WITH_WEIGHT_DECAY: dict[type, type] = {}


class _MadeByWithWeightDecay(type):
    """The metaclass of the classes :func:`with_weight_decay` makes.

    A class made at run time cannot be found by name when unpickled; it pickles as the
    call that makes it (registered with :mod:`copyreg` below).
    """

    _weight_decay_base: type


def _reduce_made_class(cls: _MadeByWithWeightDecay) -> tuple[Any, tuple[type]]:
    return with_weight_decay, (cls._weight_decay_base,)


def _metaclass_for(base: type) -> type:
    """``_MadeByWithWeightDecay``, combined with the base's own metaclass if it has one."""
    if type(base) is type:
        return _MadeByWithWeightDecay
    name = f"_MadeByWithWeightDecay_{type(base).__name__}"
    meta = type(name, (_MadeByWithWeightDecay, type(base)), {})
    copyreg.pickle(meta, _reduce_made_class)
    return meta


copyreg.pickle(_MadeByWithWeightDecay, _reduce_made_class)


def _make_with_weight_decay(optimizer_class: type[_Optimizer]) -> type[_Optimizer]:
    base_signature = inspect.signature(optimizer_class)
    base_takes_weight_decay = "weight_decay" in base_signature.parameters

    def __init__(
        self,
        params: Any,
        *args: Any,
        decoupled_weight_decay: bool = False,
        weight_decay_scaling: str = "lr",
        cautious_weight_decay: bool = False,
        **kwargs: Any,
    ) -> None:
        if base_takes_weight_decay:
            weight_decay = base_signature.bind(params, *args, **kwargs)
            weight_decay = weight_decay.arguments.get("weight_decay", 0.0)
        else:
            weight_decay = kwargs.pop("weight_decay", 0.0)
            _rule.check_weight_decay("weight_decay", weight_decay)
        self._prepare_weight_decay(
            weight_decay, decoupled_weight_decay, weight_decay_scaling, cautious_weight_decay
        )
        if not base_takes_weight_decay:
            self._weight_decay_defaults["weight_decay"] = weight_decay
        optimizer_class.__init__(self, params, *args, **kwargs)

    namespace = {
        "__init__": __init__,
        "__doc__": f"{optimizer_class.__name__} with coupled L2 or decoupled weight decay."
        + WEIGHT_DECAY_ARGS.format(default="False"),
        "__module__": __name__,
        "__qualname__": f"with_weight_decay({optimizer_class.__qualname__})",
        "_weight_decay_base": optimizer_class,
    }
    metaclass = _metaclass_for(optimizer_class)
    return metaclass(optimizer_class.__name__, (WeightDecayMixin, optimizer_class), namespace)
