"""Set-up shared by the tests that train inside Lightning, 🤗 Trainer, Accelerate, skorch, timm.

Nothing is downloaded: every model is built from a config, and the hubs are switched
off before any framework is imported.
"""

from __future__ import annotations

import os

import torch
from _torch_threads import one_torch_thread  # noqa: F401  (autouse: tiny models, busy cores)

for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _import_torchvision() -> None:
    """Import torchvision if it is installed, also where PyPI's CUDA build sits beside a CPU torch.

    That build's compiled operators cannot load without torch's CUDA libraries; its
    ``__init__`` then fails on registering a fake kernel for ``torchvision::nms``
    ("operator torchvision::nms does not exist"), and so does every import of timm,
    torchmetrics and Lightning. Declaring the two operators it registers unconditionally
    lets its pure-Python parts (the ones timm and torchmetrics use) import; the compiled
    operators stay unavailable, as torchvision itself reports (``extension._has_ops()``).
    """
    try:
        import torchvision  # noqa: F401
    except ModuleNotFoundError:
        return  # Lightning, transformers, Accelerate and skorch run without it
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
        # Kept for the life of the process: the declarations go when the library object does.
        global _TORCHVISION_OPS
        _TORCHVISION_OPS = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            _TORCHVISION_OPS.define(
                f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor"
            )
        import torchvision  # noqa: F401


_import_torchvision()
