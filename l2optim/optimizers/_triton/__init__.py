"""One-pass multi-tensor optimizer steps written in Triton (functional, like torch.optim's).

``sgd_step``, ``adam_step`` and ``rmsprop_step`` update every parameter of a param group
with one kernel launch per device and dtype, for every mode of torch's SGD, Adam and
RMSprop plus decoupled decay, with GradScaler's scale and overflow flag applied on the
device. ``supports(params)`` says whether the kernels accept the tensors; ``available()``
whether triton is installed. triton is imported when a kernel first runs, never by
``import l2optim``.
"""

from l2optim.optimizers._triton._steps import (
    adam_step,
    available,
    init_adam_state,
    init_rmsprop_state,
    interpreted,
    rmsprop_step,
    sgd_step,
    supports,
)

__all__ = [
    "adam_step",
    "available",
    "init_adam_state",
    "init_rmsprop_state",
    "interpreted",
    "rmsprop_step",
    "sgd_step",
    "supports",
]
