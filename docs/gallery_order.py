"""The order of the example gallery: from the walkthrough to the advanced uses."""

from __future__ import annotations

from pathlib import Path

#: Example file names in reading order; any other example follows, alphabetically.
ORDER = (
    "linear_regression.py",
    "coupled_vs_decoupled.py",
    "ridge_vs_box.py",
    "ridge_cv_curve.py",
    "select_lambda_mlp.py",
    "select_lambda_fast.py",
    "norms_and_biases.py",
    "lr_schedule_scaling.py",
    "decay_rules.py",
)


class IssueOrder:
    """Sort key for sphinx-gallery's ``within_subsection_order``."""

    def __init__(self, src_dir: str) -> None:
        self.src_dir = src_dir

    def __call__(self, filename: str) -> tuple[int, str]:
        name = Path(filename).name
        return (ORDER.index(name) if name in ORDER else len(ORDER), name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__}>"
