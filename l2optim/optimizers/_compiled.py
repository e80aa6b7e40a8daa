"""Compiled one-pass updates, for the modes torch has no fused kernel for.

torch has no fused kernel for SGD with momentum and decoupled decay, or for RMSprop in
any form. Those families write the update as plain multi-tensor torch code (the decay,
then torch's own functional update: ``_sgd.momentum_update``, ``_rmsprop.update``), and
``run_compiled`` runs it through ``torch.compile`` (Inductor: C++ on CPU, Triton on
GPU), which fuses it into one pass. The learning rate and the decay factor enter as
tensors, so a schedule never recompiles.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from l2optim import _compat
from l2optim.optimizers import _rule

__all__ = ["run_compiled", "scalar_tensor", "unscale_and_decay"]


def unscale_and_decay(
    params: list[Tensor], grads: list[Tensor], factor: Tensor | None, grad_scale: Tensor | None
) -> list[Tensor]:
    """What comes before the base update: g/scale (under GradScaler), and p ← p·factor."""
    if grad_scale is not None:
        grads = _compat.foreach_div(grads, grad_scale)
    if factor is not None:
        _rule.shrink(params, factor)
    return grads


# One compiled function per update and static configuration (the hyperparameters that
# are Python numbers, and which tensor arguments are present). Each gets a code object of
# its own, so each has its own recompilation budget: new layouts of one configuration
# recompile, and configurations never evict each other.
_by_configuration: dict[tuple[Any, ...], Callable[..., None]] = {}
_compile_failed: set[tuple[Any, ...]] = set()


def _configuration(update: Callable[..., None], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    static = tuple(sorted((k, v) for k, v in kwargs.items() if not isinstance(v, Tensor)))
    return (update, static)


def _compile(
    update: Callable[..., None], index: int, backend: str = "inductor"
) -> Callable[..., None]:
    code = update.__code__.replace(co_name=f"{update.__name__}_{index}")
    copy = types.FunctionType(code, update.__globals__, code.co_name, update.__defaults__)
    copy.__kwdefaults__ = update.__kwdefaults__
    return torch.compile(copy, fullgraph=True, dynamic=False, backend=backend)


def run_compiled(update: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Run ``update`` compiled; if compilation is unavailable, run it as it is, once warned.

    Inside a step the user compiles, the update is traced into the user's graph as it is.
    """
    key = _configuration(update, kwargs)
    if not torch.compiler.is_compiling() and key not in _compile_failed:
        compiled = _by_configuration.get(key)
        if compiled is None:
            compiled = _by_configuration[key] = _compile(update, len(_by_configuration))
        try:
            compiled(*args, **kwargs)
            return
        except Exception as error:  # noqa: BLE001 - any compiler failure means: don't compile
            _compile_failed.add(key)
            warnings.warn(
                f"fused=True: compiling {update.__name__} failed ({type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}); using the unfused "
                "multi-tensor step instead",
                RuntimeWarning,
                stacklevel=4,
            )
    update(*args, **kwargs)


def scalar_tensor(value: Any, params: list[Tensor]) -> Tensor:
    """``value`` as a 0-d tensor on the parameters' device, float64 if any parameter is."""
    dtype = torch.float64 if any(p.dtype == torch.float64 for p in params) else torch.float32
    if isinstance(value, Tensor):
        return value.to(device=params[0].device, dtype=dtype)
    return torch.tensor(value, device=params[0].device, dtype=dtype)
