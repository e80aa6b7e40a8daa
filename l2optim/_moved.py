"""Where the modules of l2optim 0.1.0 went.

A pickle names each class and function by the module it was defined in: an optimizer
saved whole with ``torch.save``, a trained :class:`~l2optim.Standardized` model, a
search's result. l2optim 0.1.0 kept everything in one flat package; these are its
module names, mapped to where their picklable contents live now, so that such files
still load. New pickles name the new modules.
"""

from __future__ import annotations

import importlib
import sys
import types

__all__ = ["install"]

#: Old module → its new home, for the modules whose contents pickles name.
MOVED = {
    "l2optim._with_weight_decay": "l2optim.optimizers._with_weight_decay",
    "l2optim._curve": "l2optim.selection._curve",
    "l2optim._kfold": "l2optim.selection._kfold",
    "l2optim._race": "l2optim.selection._race",
    "l2optim._ridge": "l2optim.selection._ridge",
    "l2optim._search": "l2optim.selection._search",
    "l2optim._fast": "l2optim.selection._select_fast",
    "l2optim._trainer": "l2optim.selection._trainer",
}
#: l2optim 0.1.0's module of the optimizer classes, now one module per family.
OLD_CLASSES = "l2optim._optimizers"


def install() -> None:
    """Make the old module names resolve (called once, by ``import l2optim``)."""
    for old, new in MOVED.items():
        sys.modules.setdefault(old, importlib.import_module(new))
    if OLD_CLASSES not in sys.modules:
        from l2optim import optimizers

        classes = types.ModuleType(OLD_CLASSES, "The optimizer classes' module in l2optim 0.1.0.")
        for name in ("SGD", "SGDW", "Adam", "AdamW", "RMSprop", "RMSpropW"):
            setattr(classes, name, getattr(optimizers, name))
        sys.modules[OLD_CLASSES] = classes
