"""What the λ benchmarks share: a cache of full CV between runs, and race settings from text.

Full 5-fold CV is the reference every method is measured against, and by far the most
expensive: a study of the race's settings reruns only the race when full CV's choice and
its test loss are kept in a JSON file.
"""

from __future__ import annotations

import ast
import json
import os


class Cache:
    """Full CV's choice and the test losses of each problem and split, kept in a JSON file
    between runs (``None``: kept in memory only)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.data = {}
        if path is not None and os.path.exists(path):
            with open(path) as file:
                self.data = json.load(file)

    def entry(self, name: str, split: int) -> dict:
        return self.data.setdefault(f"{name}/{split}", {"test": {}})

    def save(self) -> None:
        if self.path is not None:
            with open(self.path, "w") as file:
                json.dump(self.data, file)


def race_settings(text: str) -> dict:
    """``"survivors=3,reference_folds=None"`` → ``{"survivors": 3, "reference_folds": None}``."""
    settings = {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=")
        settings[key.strip()] = ast.literal_eval(value.strip())
    return settings
