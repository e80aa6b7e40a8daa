"""Choosing the implementation of a step: torch's fused kernels by default.

torch.optim never picks its fused kernels unless asked, though an optimizer step is
memory-bound and they reach the memory floor. Here, when the user passes neither
``foreach`` nor ``fused``, a class whose base has a fused kernel uses it whenever every
parameter allows it; otherwise torch's own default stands.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.optim.optimizer import _get_fused_kernels_supported_devices

__all__ = ["FusedStepMixin", "fused_kernel_supports"]


def fused_kernel_supports(params: list[Tensor]) -> bool:
    """Whether torch's fused optimizer kernels accept every tensor in ``params``.

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


class FusedStepMixin:
    """Turns on the base class's fused kernel by default where it applies."""

    #: Whether the torch base class has a fused kernel (``fused=`` argument).
    param_groups: list[dict[str, Any]]
    defaults: dict[str, Any]

    def _base_has_fused_kernel(self) -> bool:
        return "fused" in self.defaults

    def _choose_implementation(self, foreach: bool | None, fused: bool | None) -> None:
        """Called at the end of ``__init__`` with the user's ``foreach`` and ``fused``."""
        if foreach is not None or fused is not None:
            return
        if not self._base_has_fused_kernel() or self.defaults.get("differentiable"):
            return
        params = [p for group in self.param_groups for p in group["params"]]
        if not fused_kernel_supports(params):
            return
        if any(g.get("foreach") is not None or g.get("fused") is not None for g in self.param_groups):
            return  # a group chose for itself
        self.defaults["fused"] = True
        for group in self.param_groups:
            group["fused"] = True
        # What torch sets when fused=True is passed: GradScaler then hands the step
        # the scale and the overflow flag instead of unscaling first.
        self._step_supports_amp_scaling = True
        self._need_device_dtype_check_for_fused = True

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # type: ignore[misc]
        # A loaded checkpoint brings its own choice per group; GradScaler may only hand
        # over scaled gradients when every group unscales them itself.
        self._step_supports_amp_scaling = bool(self.param_groups) and all(
            g.get("fused") for g in self.param_groups
        )
