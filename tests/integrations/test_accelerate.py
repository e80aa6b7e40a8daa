"""l2optim inside 🤗 Accelerate: save_state / load_state resumes a run bit-exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _frameworks import require
from _training import OPTIMIZERS, assert_bit_exact, mlp, regression_data
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

accelerate = require("accelerate")

EPOCHS = 2  # before the interruption, and after it


class Run:
    """A model, an l2optim optimizer and a cosine schedule, prepared by an Accelerator."""

    def __init__(self, name: str, seed: int = 0) -> None:
        self.accelerator = accelerate.Accelerator(cpu=True)
        cls, settings = OPTIMIZERS[name]
        model = mlp(seed)
        optimizer = cls(model.parameters(), **settings)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=20)
        data = DataLoader(TensorDataset(*regression_data()), batch_size=16, shuffle=False)
        self.model, self.optimizer, self.data, self.scheduler = self.accelerator.prepare(
            model, optimizer, data, scheduler
        )

    def train(self, epochs: int) -> None:
        for _ in range(epochs):
            for x, y in self.data:
                self.optimizer.zero_grad()
                self.accelerator.backward(nn.functional.mse_loss(self.model(x), y))
                self.optimizer.step()
                self.scheduler.step()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_load_state_resumes_bit_exactly(name: str, tmp_path: Path) -> None:
    uninterrupted = Run(name)
    uninterrupted.train(EPOCHS)
    uninterrupted.accelerator.save_state(tmp_path)
    uninterrupted.train(EPOCHS)

    resumed = Run(name, seed=1)  # the saved state brings the weights
    resumed.accelerator.load_state(tmp_path)
    assert isinstance(resumed.optimizer.optimizer, OPTIMIZERS[name][0])
    resumed.train(EPOCHS)
    assert_bit_exact(resumed.model.parameters(), uninterrupted.model.parameters())
    assert resumed.scheduler.get_last_lr() == uninterrupted.scheduler.get_last_lr()
