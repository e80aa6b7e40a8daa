"""Every place where l2optim relies on something torch does not promise.

torch.optim's classes, its functional updates and GradScaler talk to each other through
private names. l2optim has to speak the same private language to be a drop-in, so each
such name is reached from here and nowhere else: when a torch release moves one, this
module breaks, loudly and in one place (``tests/test_compat.py`` checks each assumption).
"""

from __future__ import annotations

import functools
import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import optimizer as _optimizer
from torch.optim.adam import adam as _adam
from torch.optim.rmsprop import rmsprop as _rmsprop
from torch.optim.sgd import sgd as _sgd
from torch.utils import _foreach_utils

__all__ = [
    "NORM_BASE",
    "capturable_entries",
    "dask_client_of",
    "default_foreach",
    "foreach_add",
    "foreach_div",
    "foreach_mul",
    "foreach_mul_",
    "fused_kernel_devices",
    "functional_adam",
    "functional_rmsprop",
    "functional_sgd",
    "gradscaler_handoff",
    "hooked_step",
    "restore_capturable",
    "set_step_unscales",
    "warn_in_user_code",
    "step_body",
    "step_dtype",
    "step_unscales",
]

# -- multi-tensor arithmetic -------------------------------------------------------------
# torch's foreach kernels: one launch for a list of tensors. Underscored, but the
# functional optimizers of torch itself are written in them.
foreach_add: Callable[..., list[Tensor]] = torch._foreach_add
foreach_div: Callable[..., list[Tensor]] = torch._foreach_div
foreach_mul: Callable[..., list[Tensor]] = torch._foreach_mul
foreach_mul_: Callable[..., None] = torch._foreach_mul_

# -- the functional updates behind torch.optim's classes ---------------------------------
functional_sgd: Callable[..., None] = _sgd
functional_adam: Callable[..., None] = _adam
functional_rmsprop: Callable[..., None] = _rmsprop


def step_dtype() -> torch.dtype:
    """The dtype of the step counts torch's unfused Adam and RMSprop keep (float32, or
    float64 where the default dtype is)."""
    return _optimizer._get_scalar_dtype()

#: The base of every torch batch/instance normalisation layer (BatchNorm*, InstanceNorm*,
#: SyncBatchNorm); torch exports the layers but not their common base.
NORM_BASE: type[nn.Module] = nn.modules.batchnorm._NormBase


def fused_kernel_devices() -> list[str]:
    """The device types for which torch has fused optimizer kernels."""
    return list(_foreach_utils._get_fused_kernels_supported_devices())


def default_foreach(params: Sequence[Tensor], differentiable: bool) -> bool:
    """Whether torch's default (neither ``foreach`` nor ``fused`` given) is the foreach path."""
    _, foreach = _optimizer._default_to_fused_or_foreach(list(params), differentiable)
    return foreach


# -- the optimizer <-> GradScaler handshake ----------------------------------------------
# An optimizer whose ``_step_supports_amp_scaling`` is true is handed the scale and the
# overflow flag as attributes ``grad_scale`` and ``found_inf`` for the length of one step,
# instead of GradScaler unscaling the gradients and skipping the step itself.

_STEP_UNSCALES = "_step_supports_amp_scaling"


def step_unscales(optimizer: torch.optim.Optimizer) -> bool:
    """Whether GradScaler leaves unscaling and skipping to ``optimizer.step``."""
    return bool(getattr(optimizer, _STEP_UNSCALES, False))


def set_step_unscales(optimizer: torch.optim.Optimizer, value: bool) -> None:
    """Tell GradScaler (and frameworks that ask it) whether the step unscales by itself."""
    setattr(optimizer, _STEP_UNSCALES, bool(value))


def gradscaler_handoff(optimizer: torch.optim.Optimizer) -> tuple[Tensor | None, Tensor | None]:
    """``(grad_scale, found_inf)`` that GradScaler handed this step, or ``(None, None)``."""
    return getattr(optimizer, "grad_scale", None), getattr(optimizer, "found_inf", None)


# -- the step and its wrappers -----------------------------------------------------------

# torch.optim's steps run inside a wrapper that sets the grad mode (off, unless the
# optimizer is ``differentiable``) and breaks the graph on either side under
# torch.compile, so that the step compiles as a graph of its own (an inference graph,
# which lets Inductor update parameters in place).
_USE_GRAD_CODE = _optimizer._use_grad_for_differentiable(lambda self: None).__code__


def step_body(optimizer_class: type[torch.optim.Optimizer]) -> Callable[..., Any]:
    """``optimizer_class.step`` without the wrappers a subclass's own step replaces.

    torch replaces a class's ``step`` by a wrapper (marked ``hooked``) that runs the
    registered step hooks, the first time the class is instantiated, and its own classes
    wrap the update in the grad-mode wrapper described above. A subclass whose step runs
    the hooks and sets the grad mode itself (see :func:`hooked_step`) calls the base
    update through this, so neither happens twice and ``torch.compile`` sees one plain
    function. Resolved once per class: the function under the wrappers never changes.
    """
    step = optimizer_class.step
    while getattr(step, "hooked", False):
        step = step.__wrapped__
    if step.__code__ is _USE_GRAD_CODE:
        step = step.__wrapped__
    return step


def hooked_step(step: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``step`` as torch.optim runs its own, and mark it so that torch does not wrap it.

    torch wraps a class's step (see :func:`step_body`) to open a profiler range named
    ``Optimizer.step#<class>.step``, run the step pre-hooks (global, then the optimizer's;
    one may return new ``(args, kwargs)``), set the grad mode and break the graph on either
    side of the update under torch.compile, then note the step for the profiler's Python
    tracer and run the post-hooks. This does the same, in the same order, with one
    difference: outside torch.compile the profiler range is opened only while torch's
    profiler runs (torch's own compiled code checks the same way), because opening one
    costs tens of microseconds per step on a CPU, more than a small model's whole update.

    Unlike torch's wrapper, an optimizer without a ``differentiable`` default (one
    written outside torch) counts as not differentiable. A subclass that overrides the
    step gets torch's wrapper around its own; this one then runs only the update, so
    hooks do not run twice.
    """

    @functools.wraps(step)
    def run(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
        if type(self).step is not run:
            return _grad_mode_update(step, self, args, kwargs)
        if torch.compiler.is_compiling() or torch.autograd._profiler_enabled():
            name = f"Optimizer.step#{type(self).__name__}.step"
            with torch.autograd.profiler.record_function(name):
                return _hooked_update(step, self, args, kwargs)
        return _hooked_update(step, self, args, kwargs)

    run.hooked = True  # type: ignore[attr-defined]
    return run


def _hooked_update(
    step: Callable[..., Any],
    self: torch.optim.Optimizer,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    """The step with its hooks around it, as torch's ``Optimizer.profile_hook_step`` runs it."""
    for pre_hook in (
        *_optimizer._global_optimizer_pre_hooks.values(),
        *self._optimizer_step_pre_hooks.values(),
    ):
        result = pre_hook(self, (self, *args), kwargs)
        if result is not None:
            if isinstance(result, tuple) and len(result) == 2:
                (_, *args), kwargs = result
            else:
                raise RuntimeError(
                    f"{step} must return None or a tuple of (new_args, new_kwargs), "
                    f"but got {result}."
                )
    out = _grad_mode_update(step, self, args, kwargs)
    self._optimizer_step_code()
    for post_hook in (
        *self._optimizer_step_post_hooks.values(),
        *_optimizer._global_optimizer_post_hooks.values(),
    ):
        post_hook(self, (self, *args), kwargs)
    return out


def _grad_mode_update(
    step: Callable[..., Any],
    self: torch.optim.Optimizer,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    import torch._dynamo  # here, as torch does: importing it costs seconds

    previous = torch.is_grad_enabled()
    try:
        torch.set_grad_enabled(bool(self.defaults.get("differentiable", False)))
        torch._dynamo.graph_break()
        return step(self, *args, **kwargs)
    finally:
        torch._dynamo.graph_break()
        torch.set_grad_enabled(previous)


# -- warnings ----------------------------------------------------------------------------

# A step reaches l2optim's code through torch's wrappers (the hooks, an lr scheduler's
# patch of ``optimizer.step``): a warning is attributed to the first frame outside both.
_LIBRARY_DIRS = tuple(
    os.path.dirname(path) + os.sep
    for path in (sys.modules[__name__.partition(".")[0]].__file__, _optimizer.__file__)
)


def warn_in_user_code(message: str, category: type[Warning]) -> None:
    """``warnings.warn``, pointing at the line of the caller's code that led here."""
    level, frame = 1, sys._getframe(0)
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        level, frame = level + 1, frame.f_back
    warnings.warn(message, category, stacklevel=level)


# -- torch.compile ---------------------------------------------------------------------

_NO_ENTRY = "no capturable entry"  # a str: Dynamo compares constants, not new objects


def capturable_entries(optimizer: torch.optim.Optimizer) -> list[Any] | None:
    """Under torch.compile, the ``capturable`` entry each param group should keep.

    While it traces a step, Dynamo's optimizer support shows every param group, with the
    entry or without, as ``capturable=True``, and sets it for real only in groups that
    have the entry and whose parameters are all on CUDA or XPU with no state yet. A step
    that writes into a group (l2optim's views) makes Dynamo write every shown entry back
    after the graph, the ``True`` included: a CPU group would stay capturable, which
    torch's eager step then refuses. The trace cannot read the stored entry past that
    showing (reading the groups another way changes how Dynamo sees them, and torch's
    ``_init_group`` then leaves the graph), so the entry kept is the optimizer's default,
    no entry where the class has none, or ``True`` where Dynamo sets it itself.
    Call before the step creates state. None outside torch.compile.
    """
    if not torch.compiler.is_compiling():
        return None
    default = optimizer.defaults.get("capturable", _NO_ENTRY)
    entries = []
    for group in optimizer.param_groups:
        params = group["params"]
        entry = default
        if (
            default != _NO_ENTRY
            and all(p.is_cuda or p.is_xpu for p in params)
            and not any(p in optimizer.state for p in params)
        ):
            entry = True  # what Dynamo sets for real
        entries.append(entry)
    return entries


def restore_capturable(
    groups: list[dict[str, Any]], entries: list[Any], written: list[dict[str, Any]]
) -> None:
    """Put back the ``capturable`` entries of the groups a traced step wrote into."""
    for group, entry in zip(groups, entries, strict=True):
        if not any(group is w for w in written):
            continue
        if entry == _NO_ENTRY:
            group.pop("capturable", None)
        else:
            group["capturable"] = entry


# -- dask --------------------------------------------------------------------------------


def dask_client_of(executor: Any) -> Any:
    """The ``dask.distributed.Client`` behind ``executor``, or None for anything else.

    A Client is its own; the executor a Client gives (``client.get_executor()``) keeps its
    client in a private attribute, the one name reached here.
    """
    # Only a process that made a dask client has distributed imported: never import it.
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    if isinstance(executor, distributed.Client):
        return executor
    if isinstance(executor, distributed.cfexecutor.ClientExecutor):
        return executor._client
    return None
