"""Importing a framework: skipped where it is not installed, except in CI, where it must be."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require(module: str) -> ModuleType:
    """``module``, imported; outside CI a failed import skips the test module.

    In CI (``CI`` set) the import error propagates, so a broken install fails the run
    instead of quietly skipping it. Install them with ``pip install -e ".[integrations]"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module}: {error} (the integrations extra)", allow_module_level=True)
