"""Writes ``pickles-0.1.0.pt``: objects pickled by l2optim 0.1.0's module layout.

Run once, at the commit before the package was split into its two halves; the file is
kept so that tests/test_old_pickles.py can check that what users pickled then (an
optimizer inside ``torch.save``, a trainer, a search's result) still loads and carries on.
Each entry holds what to feed the object and what it gave then.
"""

from __future__ import annotations

import functools
import io
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import nn

import l2optim


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))


def _grads(model: nn.Module, step: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(100 + step)
    return [torch.randn(p.shape, generator=generator) for p in model.parameters()]


def _step(model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> None:
    for p, g in zip(model.parameters(), _grads(model, step), strict=True):
        p.grad = g
    optimizer.step()


OPTIMIZERS = {
    "SGD": lambda p: l2optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.01),
    "SGDW": lambda p: l2optim.SGDW(p, lr=0.1, momentum=0.9, weight_decay=0.05,
                                   weight_decay_scaling="schedule"),
    "AdamW": lambda p: l2optim.AdamW(p, lr=0.01, weight_decay=0.1),
    "RMSpropW": lambda p: l2optim.RMSpropW(p, lr=0.01, weight_decay=0.1, momentum=0.5),
    "AdagradW": lambda p: l2optim.with_weight_decay(torch.optim.Adagrad)(
        p, lr=0.1, weight_decay=0.05, decoupled_weight_decay=True
    ),
}


def main() -> None:
    entries: dict = {"optimizers": {}}
    for name, make in OPTIMIZERS.items():
        model = _model()
        optimizer = make(model.parameters())
        for step in range(2):
            _step(model, optimizer, step)
        saved = {"model": model, "optimizer": optimizer}
        buffer = io.BytesIO()
        torch.save(saved, buffer)
        for step in range(2, 4):
            _step(model, optimizer, step)
        entries["optimizers"][name] = {
            "pickled": buffer.getvalue(),
            "after": [p.detach().clone() for p in model.parameters()],
        }
    X, y, _ = l2optim.data.load_diabetes()
    trainer = l2optim.FoldTrainer(
        functools.partial(nn.Linear, 10, 1), X, y, optimizer=l2optim.SGDW,
        optimizer_kwargs={"lr": 0.05, "momentum": 0.9}, epochs=3, batch_size=64,
        standardize=True,
    )
    objective = l2optim.kfold_objective(trainer, len(y), folds=3)
    search = l2optim.select_lambda(objective, bounds=(1e-4, 1.0), n_grid=3, xtol=1.0,
                                   progress=False)
    ridge = l2optim.ridge_cv(X, y, cv=3, standardize=True)
    race = l2optim.select_lambda_fast(trainer, budget=3)
    entries["selection"] = {
        "pickled": pickle.dumps({"objective": objective, "search": search, "ridge": ridge,
                                 "race": race, "model": trainer.fit(0.01)}),
        "scores": objective(0.01),
        "lambda_min": (search.lambda_min, ridge.lambda_min, race.lambda_min),
        "prediction": trainer.fit(0.01)(torch.as_tensor(X[:5])).detach(),
    }
    np.testing.assert_equal(len(entries["optimizers"]), len(OPTIMIZERS))
    torch.save(entries, Path(__file__).with_name("pickles-0.1.0.pt"))


if __name__ == "__main__":
    main()
