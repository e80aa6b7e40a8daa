"""The docstrings: every example in them runs, and none holds a stray control character.

The API reference is built from these docstrings, so an example there is documentation
like any other: each runs here as a doctest, with ``torch``, ``l2optim``, ``math`` and
``np`` imported as a reader would have them. A control character (a TAB where ``\\t``
began ``\\theta`` in a string that was not raw) renders as garbage in the formulas.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import math
import pkgutil
from pathlib import Path

import numpy as np
import pytest
import torch
from _torch_threads import one_torch_thread  # noqa: F401 (autouse fixture)

import l2optim


def _modules() -> list:
    names = [l2optim.__name__] + [
        info.name for info in pkgutil.walk_packages(l2optim.__path__, f"{l2optim.__name__}.")
    ]
    return [importlib.import_module(name) for name in names]


MODULES = _modules()


def _documented(module) -> list[tuple[str, str]]:
    """(qualified name, docstring) of the module and of what it defines."""
    found = [(module.__name__, inspect.getdoc(module) or "")]
    for name, value in vars(module).items():
        if getattr(value, "__module__", None) != module.__name__:
            continue
        found.append((f"{module.__name__}.{name}", value.__doc__ or ""))
        if inspect.isclass(value):
            for attribute, member in vars(value).items():
                target = member.fget if isinstance(member, property) else member
                target = getattr(target, "__func__", target)
                doc = getattr(target, "__doc__", None) if callable(target) or isinstance(
                    member, property
                ) else None
                if doc:
                    found.append((f"{module.__name__}.{name}.{attribute}", doc))
    return found


def _doctests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    globs = {"torch": torch, "l2optim": l2optim, "math": math, "np": np}
    tests = []
    for module in MODULES:
        tests += [t for t in finder.find(module, extraglobs=globs) if t.examples]
    return sorted(tests, key=lambda t: t.name)


DOCTESTS = _doctests()


def test_the_package_has_docstring_examples() -> None:
    # The finder sees the public functions' examples (a rename would hide them silently).
    names = {t.name.rsplit(".", 1)[-1] for t in DOCTESTS}
    assert {"decay_groups", "select_lambda", "select_lambda_fast", "conversions"} <= names


@pytest.mark.timeout(300)
@pytest.mark.parametrize("test", DOCTESTS, ids=lambda t: t.name)
def test_docstring_example_runs(test: doctest.DocTest) -> None:
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} example(s) of {test.name} failed (output above)"


def _control_characters(text: str) -> list[str]:
    return sorted({repr(c) for c in text if ord(c) < 32 and c != "\n"} | (
        {"'\\x7f'"} if "\x7f" in text else set()
    ))


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.__name__)
def test_no_docstring_holds_a_control_character(module) -> None:
    bad = {name: _control_characters(doc) for name, doc in _documented(module)}
    assert not {name: chars for name, chars in bad.items() if chars}


def test_no_source_file_holds_a_control_character() -> None:
    # A raw string keeps a literal TAB as a TAB: the docstring check alone would pass it
    # as long as nothing imports the object, so the files are read too.
    root = Path(l2optim.__file__).parent
    bad = {
        str(path.relative_to(root)): chars
        for path in sorted(root.rglob("*.py"))
        if (chars := _control_characters(path.read_text(encoding="utf-8")))
    }
    assert not bad
