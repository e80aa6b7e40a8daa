"""l2optim inside skorch: pickled and copied nets continue exactly, and GridSearchCV chooses λ.

skorch pickles whole nets (``pickle``, ``copy.deepcopy``, scikit-learn's parallel
search), optimizer included; a copy must continue as the original does.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from _frameworks import require
from _training import OPTIMIZERS, assert_bit_exact, mlp
from torch import nn

import l2optim

skorch = require("skorch")
from sklearn.metrics import mean_squared_error  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold  # noqa: E402

FEATURES = 12
# Made at import, as a user's script would: a class that pickles by reference.
AdagradW = l2optim.with_weight_decay(torch.optim.Adagrad)

NET_OPTIMIZERS = {
    **{name: settings for name, settings in OPTIMIZERS.items()},
    "AdagradW": (AdagradW, {"lr": 0.05, "weight_decay": 0.05, "decoupled_weight_decay": True}),
}


class MLP(nn.Module):
    """skorch builds the module from its parameters: the same seed gives the same weights."""

    def __init__(self, seed: int = 0, hidden: int = 32) -> None:
        super().__init__()
        with torch.random.fork_rng():  # leaves the global generator as it was
            self.net = mlp(seed, features=FEATURES, hidden=hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def data(n: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A sparse linear target with noise: λ matters for a 12-input MLP on 32 rows."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, FEATURES)).astype(np.float32)
    w = np.zeros((FEATURES, 1), dtype=np.float32)
    w[:3] = 1.0
    return x, (x @ w + 0.5 * rng.standard_normal((n, 1))).astype(np.float32)


def net(optimizer: str = "SGDW", **settings) -> skorch.NeuralNetRegressor:
    cls, defaults = NET_OPTIMIZERS[optimizer]
    kwargs = {
        "optimizer": cls,
        "lr": defaults["lr"],
        "max_epochs": 2,
        "batch_size": 16,
        "train_split": None,
        "iterator_train__shuffle": False,
        "verbose": 0,
        **{f"optimizer__{k}": v for k, v in defaults.items() if k != "lr"},
        **settings,
    }
    return skorch.NeuralNetRegressor(MLP, **kwargs)


def compiled_graphs() -> int:
    return sum(torch._dynamo.utils.counters["stats"].values())


@pytest.mark.parametrize("duplicate", ["pickle", "deepcopy", "save_params"])
@pytest.mark.parametrize("optimizer", list(NET_OPTIMIZERS))
def test_copied_net_continues_like_the_original(
    optimizer: str, duplicate: str, tmp_path: Path
) -> None:
    x, y = data()
    original = net(optimizer).partial_fit(x, y)
    if duplicate == "pickle":
        twin = pickle.loads(pickle.dumps(original))
    elif duplicate == "deepcopy":
        twin = copy.deepcopy(original)
    else:  # state dicts: load_state_dict into a new net's optimizer
        files = {"f_params": tmp_path / "params.pt", "f_optimizer": tmp_path / "optimizer.pt"}
        original.save_params(**files)
        twin = net(optimizer, module__seed=1).initialize()
        twin.load_params(**files)
    assert type(twin.optimizer_).__qualname__ == NET_OPTIMIZERS[optimizer][0].__qualname__

    original.partial_fit(x, y)
    graphs = compiled_graphs()
    twin.partial_fit(x, y)
    assert compiled_graphs() == graphs, "the copy compiled a step the original never did"
    assert_bit_exact(twin.module_.parameters(), original.module_.parameters())
    assert (
        twin.optimizer_.state_dict()["param_groups"]
        == original.optimizer_.state_dict()["param_groups"]
    )


def test_torch_save_of_a_with_weight_decay_optimizer(tmp_path: Path) -> None:
    model = mlp()
    optimizer = AdagradW(model.parameters(), lr=0.1, weight_decay=0.05, decoupled_weight_decay=True)
    x, y = torch.randn(16, 4), torch.randn(16, 1)

    def train(model, optimizer) -> None:
        for _ in range(2):
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            optimizer.step()

    train(model, optimizer)
    # Saved together, the optimizer refers to the saved model's parameters.
    torch.save({"model": model, "optimizer": optimizer}, tmp_path / "run.pt")
    loaded = torch.load(tmp_path / "run.pt", weights_only=False)
    assert isinstance(loaded["optimizer"], torch.optim.Adagrad)
    assert type(loaded["optimizer"]).__qualname__ == AdagradW.__qualname__
    train(model, optimizer)
    train(loaded["model"], loaded["optimizer"])
    assert_bit_exact(loaded["model"].parameters(), model.parameters())


def test_grid_search_over_weight_decay_agrees_with_brute_force() -> None:
    """GridSearchCV's λ for SGDW is the λ a plain loop over the same grid and folds finds."""
    x, y = data()
    grid = [0.0, 0.3, 1.0, 3.0]
    folds = KFold(3)
    settings = {"max_epochs": 10, "optimizer__weight_decay": 0.0}
    search = GridSearchCV(
        net(**settings),
        {"optimizer__weight_decay": grid},
        cv=folds,
        scoring="neg_mean_squared_error",
        refit=False,
    ).fit(x, y)

    brute_force = []
    for weight_decay in grid:
        scores = []
        for train, test in folds.split(x):
            fitted = net(**dict(settings, optimizer__weight_decay=weight_decay)).fit(
                x[train], y[train]
            )
            scores.append(-mean_squared_error(y[test], fitted.predict(x[test])))
        brute_force.append(np.mean(scores))

    np.testing.assert_allclose(search.cv_results_["mean_test_score"], brute_force, rtol=1e-6)
    assert search.best_params_["optimizer__weight_decay"] == grid[int(np.argmax(brute_force))]
    assert len(set(np.round(brute_force, 6))) == len(grid), "λ made no difference"
