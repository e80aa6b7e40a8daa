"""Counting the calls of one of torch's functions: which kernel a step ran."""

from __future__ import annotations


def count_calls(monkeypatch, module, name: str) -> list[int]:
    """Count the calls of ``module.name`` from now on (in ``[0]`` of the list returned)."""
    calls = [0]
    original = getattr(module, name)

    def counted(*args, **kwargs):
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls
