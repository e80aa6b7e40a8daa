"""Choosing the implementation of a step, and a compiled fused step where torch has none.

An optimizer step is memory-bound: it reads and writes each parameter and its state.
torch reaches that floor only with its fused kernels, which it never picks by default,
and has none for SGD with momentum and decoupled decay or for RMSprop. Here:

* with neither ``foreach`` nor ``fused`` given, a class whose torch base has a fused
  kernel (SGD, Adam) uses it whenever every parameter allows it; otherwise torch's
  own default stands;
* ``fused=True`` on a mode torch has no kernel for runs torch's own multi-tensor update,
  preceded by the decay, through ``torch.compile`` (Inductor: C++ on CPU, Triton on GPU),
  which fuses it into one pass. The learning rate and the decay factor enter as tensors,
  so a schedule does not recompile; each parameter layout compiles once and is reused.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import _get_fused_kernels_supported_devices
from torch.optim.rmsprop import rmsprop as torch_rmsprop
from torch.optim.sgd import sgd as torch_sgd

from l2optim import _decay

__all__ = ["FusedStepMixin", "fused_kernel_supports"]


def fused_kernel_supports(params: list[Tensor]) -> bool:
    """Whether fused kernels accept every tensor in ``params``.

    Plain dense floating-point tensors on a supported device; not complex, sparse, or a
    tensor subclass such as DTensor (some fused kernels have no sharding rule for it).
    """
    devices = set(_get_fused_kernels_supported_devices())
    return bool(params) and all(
        type(p) in (Tensor, torch.nn.Parameter)
        and p.device.type in devices
        and torch.is_floating_point(p)
        and not p.is_sparse
        for p in params
    )


# -- the functional steps (plain torch code: compiled, or run as they are) -------------


def _unscale_and_decay(
    params: list[Tensor], grads: list[Tensor], factor: Tensor | None, grad_scale: Tensor | None
) -> list[Tensor]:
    """What comes before the base update: g/scale (under GradScaler), and p ← p·factor."""
    if grad_scale is not None:
        grads = torch._foreach_div(grads, grad_scale)
    if factor is not None:
        _decay.shrink(params, factor)
    return grads


def sgd_momentum_update(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: Tensor,
    factor: Tensor | None,
    grad_scale: Tensor | None,
    weight_decay: float,
    momentum: float,
    dampening: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    """Decoupled decay (p ← p·factor), then torch's multi-tensor SGD with momentum."""
    grads = _unscale_and_decay(params, grads, factor, grad_scale)
    torch_sgd(
        params,
        grads,
        momentum_buffers,
        foreach=True,
        weight_decay=weight_decay,
        momentum=momentum,
        lr=lr,
        dampening=dampening,
        nesterov=nesterov,
        maximize=maximize,
    )


def rmsprop_update(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor],
    momentum_buffers: list[Tensor],
    steps: list[Tensor],
    *,
    lr: Tensor,
    factor: Tensor | None,
    grad_scale: Tensor | None,
    weight_decay: float,
    alpha: float,
    eps: float,
    momentum: float,
    centered: bool,
    maximize: bool,
) -> None:
    """Decoupled decay (p ← p·factor), then torch's multi-tensor RMSprop."""
    grads = _unscale_and_decay(params, grads, factor, grad_scale)
    torch_rmsprop(
        params,
        grads,
        square_avgs,
        grad_avgs,
        momentum_buffers,
        steps,
        foreach=True,
        maximize=maximize,
        # Compiled, torch's capturable branch keeps the tensor lr a tensor; the other
        # branch turns it into a scalar that the compiled kernel holds in float32.
        capturable=torch.compiler.is_compiling(),
        lr=lr,
        alpha=alpha,
        eps=eps,
        weight_decay=weight_decay,
        momentum=momentum,
        centered=centered,
    )


# One compiled function per update and static configuration (the hyperparameters that
# are Python numbers, and which tensor arguments are present). Each gets a code object of
# its own, so each has its own recompilation budget: new layouts of one configuration
# recompile, and configurations never evict each other.
_compiled: dict[tuple[Any, ...], Callable[..., None]] = {}
_compile_failed: set[tuple[Any, ...]] = set()


def _configuration(update: Callable[..., None], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    static = tuple(sorted((k, v) for k, v in kwargs.items() if not isinstance(v, Tensor)))
    return (update, static)


def _compile(update: Callable[..., None], index: int) -> Callable[..., None]:
    code = update.__code__.replace(co_name=f"{update.__name__}_{index}")
    copy = types.FunctionType(code, update.__globals__, code.co_name, update.__defaults__)
    copy.__kwdefaults__ = update.__kwdefaults__
    return torch.compile(copy, fullgraph=True, dynamic=False)


def run_fused(update: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    """Run ``update`` compiled; if compilation is unavailable, run it as it is, once warned."""
    key = _configuration(update, kwargs)
    if key not in _compile_failed:
        compiled = _compiled.get(key)
        if compiled is None:
            compiled = _compiled[key] = _compile(update, len(_compiled))
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


def _scalar_tensor(value: Any, params: list[Tensor]) -> Tensor:
    dtype = torch.float64 if any(p.dtype == torch.float64 for p in params) else torch.float32
    if isinstance(value, Tensor):
        return value.to(device=params[0].device, dtype=dtype)
    return torch.tensor(value, device=params[0].device, dtype=dtype)


class FusedStepMixin:
    """Fused kernels by default where torch has them; a compiled one where it has not."""

    param_groups: list[dict[str, Any]]
    defaults: dict[str, Any]
    state: dict[Tensor, Any]

    def _base_has_fused_kernel(self) -> bool:
        return isinstance(self, (torch.optim.SGD, torch.optim.Adam))

    def _choose_implementation(self, foreach: bool | None, fused: bool | None) -> None:
        """Called at the end of ``__init__`` with the user's ``foreach`` and ``fused``."""
        if not self._base_has_fused_kernel():
            # torch's class has no ``fused``: check it as torch checks its own.
            self.defaults["fused"] = fused
            for group in self.param_groups:
                group.setdefault("fused", fused)
            if fused:
                if self.defaults.get("differentiable"):
                    raise RuntimeError("`fused` does not support `differentiable`")
                if foreach:
                    raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
                self._step_supports_amp_scaling = True
            return
        if foreach is not None or fused is not None or self.defaults.get("differentiable"):
            return
        params = [p for group in self.param_groups for p in group["params"]]
        if not fused_kernel_supports(params):
            return
        if any(
            g.get("foreach") is not None or g.get("fused") is not None for g in self.param_groups
        ):
            return  # a group chose for itself
        self.defaults["fused"] = True
        for group in self.param_groups:
            group["fused"] = True
        # Chosen here, not asked for: no compiled step (its first call compiles for a while).
        self._fused_by_default = True
        # What torch sets when fused=True is passed: GradScaler then hands the step
        # the scale and the overflow flag instead of unscaling first.
        self._step_supports_amp_scaling = True
        self._need_device_dtype_check_for_fused = True

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]
        if not self._base_has_fused_kernel():
            self.defaults.setdefault("fused", None)
            for group in self.param_groups:
                group.setdefault("fused", self.defaults["fused"])
        # A loaded checkpoint brings its own choice per group; GradScaler may only hand
        # over scaled gradients when every group unscales them itself.
        self._step_supports_amp_scaling = bool(self.param_groups) and all(
            g.get("fused") for g in self.param_groups
        )

    # -- the compiled step -------------------------------------------------------------

    def _needs_compiled_step(self, group: dict[str, Any], decoupled: bool) -> bool:
        """Whether ``fused=True`` asks for maths torch has no fused kernel for."""
        if not group.get("fused") or getattr(self, "_fused_by_default", False):
            return False
        if isinstance(self, torch.optim.RMSprop):
            return True
        return isinstance(self, torch.optim.SGD) and decoupled and group["momentum"] != 0

    def _compiled_step(self, group: dict[str, Any], factor: Any) -> None:
        """One fused update of ``group``: decoupled decay by ``factor`` (or None), then the base."""
        found_inf = getattr(self, "found_inf", None)
        # GradScaler's overflow flag decides on the host: one synchronisation per step,
        # as GradScaler itself makes for every unfused optimizer.
        if found_inf is not None and bool(found_inf.item()):
            return
        params = _decay.with_grad(group["params"])
        if not params:
            return
        if not fused_kernel_supports(params):
            raise RuntimeError(
                "`fused=True` requires all the params to be dense floating point Tensors of "
                f"supported devices: {_get_fused_kernels_supported_devices()}"
            )
        lr = _scalar_tensor(group["lr"], params)
        factor = None if factor is None else _scalar_tensor(factor, params)
        grad_scale = getattr(self, "grad_scale", None)
        if isinstance(self, torch.optim.RMSprop):
            self._rmsprop_step(group, lr, factor, grad_scale)
        else:
            self._sgd_momentum_step(group, lr, factor, grad_scale)

    def _sgd_momentum_step(self, group, lr, factor, grad_scale) -> None:
        params: list[Tensor] = []
        grads: list[Tensor] = []
        buffers: list[Tensor | None] = []
        self._init_group(group, params, grads, buffers)  # type: ignore[attr-defined]
        kwargs = {
            "lr": lr,
            "factor": factor,
            "grad_scale": grad_scale,
            "weight_decay": 0.0,
            "momentum": group["momentum"],
            "dampening": group["dampening"],
            "nesterov": group["nesterov"],
            "maximize": group["maximize"],
        }
        if any(b is None for b in buffers):
            # The first step creates the buffers; compiling it would cost a second compile.
            sgd_momentum_update(params, grads, buffers, **kwargs)
        else:
            run_fused(sgd_momentum_update, params, grads, buffers, **kwargs)
        for p, buffer in zip(params, buffers, strict=True):
            self.state[p]["momentum_buffer"] = buffer

    def _rmsprop_step(self, group, lr, factor, grad_scale) -> None:
        lists: tuple[list[Tensor], ...] = ([], [], [], [], [], [])
        params, grads, square_avgs, buffers, grad_avgs, steps = lists
        self._init_group(group, params, grads, square_avgs, buffers, grad_avgs, steps)  # type: ignore[attr-defined]
        run_fused(
            rmsprop_update,
            params,
            grads,
            square_avgs,
            grad_avgs,
            buffers,
            steps,
            lr=lr,
            factor=factor,
            grad_scale=grad_scale,
            weight_decay=0.0 if group["decoupled_weight_decay"] else group["weight_decay"],
            alpha=group["alpha"],
            eps=group["eps"],
            momentum=group["momentum"],
            centered=group["centered"],
            maximize=group["maximize"],
        )
