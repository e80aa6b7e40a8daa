"""l2optim inside Lightning: checkpoints, mixed precision with clipping, LR finder, SWA, OneCycle.

Every run is a real ``lightning.pytorch.Trainer`` fit of a tiny regression MLP on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from _frameworks import require
from _training import (
    OPTIMIZERS,
    RecordedStep,
    assert_bit_exact,
    check_sgdw_schedule_scaling,
    mlp,
    regression_data,
)
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import l2optim

pl = require("lightning.pytorch")
from lightning.pytorch.callbacks import StochasticWeightAveraging  # noqa: E402
from lightning.pytorch.plugins.precision import MixedPrecision  # noqa: E402
from lightning.pytorch.tuner import Tuner  # noqa: E402

BATCHES_PER_EPOCH = 4
TRAINER = {
    "accelerator": "cpu",
    "devices": 1,
    "logger": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "enable_checkpointing": False,
    "num_sanity_val_steps": 0,
}


class Regression(pl.LightningModule):
    """An MLP fitted by MSE; ``configure`` builds the optimizer (and scheduler) config."""

    def __init__(self, configure: Callable[[nn.Module], object], seed: int = 0) -> None:
        super().__init__()
        self.net = mlp(seed)
        self.configure = configure

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x).float(), y)

    def configure_optimizers(self):
        return self.configure(self.net)


def loader(first_value: float | None = None) -> DataLoader:
    x, y = regression_data(16 * BATCHES_PER_EPOCH)
    if first_value is not None:
        x[0, 0] = first_value  # a non-finite first batch: GradScaler skips the first step
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=False)


def with_cosine(name: str) -> Callable[[nn.Module], object]:
    cls, kwargs = OPTIMIZERS[name]

    def configure(net: nn.Module):
        optimizer = cls(net.parameters(), **kwargs)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=20)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    return configure


# -- resume -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_resume_from_checkpoint_is_bit_exact(name: str, tmp_path: Path) -> None:
    uninterrupted = Regression(with_cosine(name))
    pl.Trainer(**TRAINER, max_epochs=4).fit(uninterrupted, loader())

    first_half = Regression(with_cosine(name))
    trainer = pl.Trainer(**TRAINER, max_epochs=2)
    trainer.fit(first_half, loader())
    checkpoint = tmp_path / "half.ckpt"
    trainer.save_checkpoint(checkpoint)

    resumed = Regression(with_cosine(name), seed=1)  # the checkpoint brings the weights
    trainer = pl.Trainer(**TRAINER, max_epochs=4)
    trainer.fit(resumed, loader(), ckpt_path=checkpoint)
    assert trainer.global_step == 4 * BATCHES_PER_EPOCH
    assert_bit_exact(resumed.parameters(), uninterrupted.parameters())


def shuffled_loader() -> DataLoader:
    x, y = regression_data(16 * BATCHES_PER_EPOCH)
    order = torch.Generator().manual_seed(0)
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=order)


def adamw_with_cosine(cls: type[torch.optim.Optimizer]) -> Callable[[nn.Module], object]:
    def configure(net: nn.Module):
        optimizer = cls(net.parameters(), lr=0.01, weight_decay=0.05)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=20)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    return configure


def test_a_shuffled_resume_differs_from_the_uninterrupted_run_as_with_torch_optim(tmp_path):
    """What the docs say of shuffled data: Lightning's resumed epochs draw another order
    than the uninterrupted run's, so the weights differ, exactly as torch.optim's do."""
    finals = {}
    for cls in (l2optim.AdamW, torch.optim.AdamW):
        uninterrupted = Regression(adamw_with_cosine(cls))
        pl.Trainer(**TRAINER, max_epochs=4).fit(uninterrupted, shuffled_loader())
        first_half = Regression(adamw_with_cosine(cls))
        trainer = pl.Trainer(**TRAINER, max_epochs=2)
        trainer.fit(first_half, shuffled_loader())
        checkpoint = tmp_path / f"{cls.__module__}.ckpt"
        trainer.save_checkpoint(checkpoint)
        resumed = Regression(adamw_with_cosine(cls), seed=1)
        pl.Trainer(**TRAINER, max_epochs=4).fit(resumed, shuffled_loader(), ckpt_path=checkpoint)
        finals[cls] = (list(uninterrupted.parameters()), list(resumed.parameters()))
    ours, theirs = finals[l2optim.AdamW], finals[torch.optim.AdamW]
    assert not all(torch.equal(a, b) for a, b in zip(*ours, strict=True))
    for our_run, their_run in zip(ours, theirs, strict=True):
        assert_bit_exact(our_run, their_run)


# -- mixed precision ----------------------------------------------------------------------

# The l2optim default constructor against what torch's default does for the same maths:
# torch.optim.AdamW itself, and for SGDW (which torch lacks) the single-tensor path.
AMP_CASES = {
    "AdamW": (
        lambda p: l2optim.AdamW(p, lr=0.01, weight_decay=0.05),
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.05),
    ),
    "SGDW": (
        lambda p: l2optim.SGDW(p, lr=0.05, momentum=0.9, weight_decay=0.05),
        lambda p: l2optim.SGDW(p, lr=0.05, momentum=0.9, weight_decay=0.05, foreach=False),
    ),
    "SGD": (
        lambda p: l2optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.05),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.05),
    ),
}


def precision_settings(precision: str) -> dict:
    if precision == "16-mixed":
        # Trainer(precision="16-mixed") on the CPU falls back to bf16 with a warning; the
        # plugin gives float16 autocast with a GradScaler on the CPU, as on a GPU.
        return {"plugins": [MixedPrecision("16-mixed", "cpu")]}
    return {"precision": precision}


def fit_mixed(make_optimizer, precision: str, clip: float | None, first_value: float | None = None):
    model = Regression(lambda net: make_optimizer(net.parameters()))
    trainer = pl.Trainer(
        **TRAINER, max_epochs=2, gradient_clip_val=clip, **precision_settings(precision)
    )
    trainer.fit(model, loader(first_value))
    return model, trainer


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
@pytest.mark.parametrize("name", ["AdamW", "SGDW"])
def test_mixed_precision_with_gradient_clipping_trains_like_torch(
    name: str, precision: str
) -> None:
    ours, reference = AMP_CASES[name]
    model, _ = fit_mixed(ours, precision, clip=1.0)
    expected, _ = fit_mixed(reference, precision, clip=1.0)
    start = mlp(0)
    assert any(
        not torch.equal(p, q) for p, q in zip(model.parameters(), start.parameters(), strict=True)
    )
    for p, q in zip(model.parameters(), expected.parameters(), strict=True):
        # Under autocast an ulp of difference in a weight can round a product differently.
        torch.testing.assert_close(p, q, rtol=2e-3, atol=2e-4)


@pytest.mark.parametrize("clip", [None, 1.0], ids=["no-clipping", "clipping"])
@pytest.mark.parametrize("name", ["SGD", "SGDW"])
def test_float16_first_step_skipped_with_momentum(name: str, clip: float | None) -> None:
    """float16 training often starts with an overflow; the skipped first step must leave no trace."""
    ours, reference = AMP_CASES[name]  # the reference takes the single-tensor path
    model, trainer = fit_mixed(ours, "16-mixed", clip, first_value=float("inf"))
    expected, _ = fit_mixed(reference, "16-mixed", clip, first_value=float("inf"))
    scaler = trainer.precision_plugin.scaler
    assert scaler.get_scale() < 2.0**16, "the first step was not skipped"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    for p, q in zip(model.parameters(), expected.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


# -- schedulers and what they write into the param groups ---------------------------------


class RecordingRegression(Regression):
    """Records the lr, weights and gradients of every optimizer step, and the weights after.

    In the module, not a callback: the LR finder runs with its own callbacks only.
    """

    def __init__(self, configure: Callable[[nn.Module], object]) -> None:
        super().__init__(configure)
        self.steps: list[RecordedStep] = []

    def on_before_optimizer_step(self, optimizer) -> None:
        (group,) = optimizer.param_groups
        self.steps.append(
            RecordedStep(
                lr=float(group["lr"]),
                before=[p.detach().clone() for p in group["params"]],
                grads=[p.grad.detach().clone() for p in group["params"]],
            )
        )

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.steps and not self.steps[-1].after:
            self.steps[-1].after = [p.detach().clone() for p in self.net.parameters()]


SCHEDULE_SGDW = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.05}


def schedule_sgdw(net: nn.Module, lr: float = SCHEDULE_SGDW["lr"]) -> torch.optim.Optimizer:
    settings = dict(SCHEDULE_SGDW, lr=lr)
    return l2optim.SGDW(net.parameters(), **settings, weight_decay_scaling="schedule")


def test_one_cycle_schedule_scaling_follows_lr_over_the_created_lr() -> None:
    """OneCycleLR writes max_lr/div_factor as ``initial_lr``; the decay ignores it."""

    def configure(net):
        optimizer = schedule_sgdw(net)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=0.1, total_steps=3 * BATCHES_PER_EPOCH, cycle_momentum=False
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    model = RecordingRegression(configure)
    pl.Trainer(**TRAINER, max_epochs=3).fit(model, loader())
    assert len(model.steps) == 3 * BATCHES_PER_EPOCH
    check_sgdw_schedule_scaling(
        model.steps,
        lr_ref=SCHEDULE_SGDW["lr"],
        weight_decay=SCHEDULE_SGDW["weight_decay"],
        momentum=SCHEDULE_SGDW["momentum"],
    )


def test_stochastic_weight_averaging_schedule_scaling() -> None:
    """Lightning's SWA callback sets ``initial_lr`` to swa_lr; the decay follows lr/lr_ref."""
    model = RecordingRegression(schedule_sgdw)
    swa = StochasticWeightAveraging(swa_lrs=0.02, swa_epoch_start=2, annealing_epochs=1)
    pl.Trainer(**TRAINER, max_epochs=4, callbacks=[swa]).fit(model, loader())
    assert {round(step.lr, 6) for step in model.steps[-BATCHES_PER_EPOCH:]} == {0.02}
    check_sgdw_schedule_scaling(
        model.steps,
        lr_ref=SCHEDULE_SGDW["lr"],
        weight_decay=SCHEDULE_SGDW["weight_decay"],
        momentum=SCHEDULE_SGDW["momentum"],
    )


def test_lr_finder_with_schedule_scaling(tmp_path: Path) -> None:
    """The LR finder writes its lower bound as ``initial_lr``; the sweep must still run."""
    model = RecordingRegression(lambda net: schedule_sgdw(net, lr=0.01))
    trainer = pl.Trainer(**TRAINER, max_epochs=4, default_root_dir=tmp_path)
    finder = Tuner(trainer).lr_find(
        model,
        train_dataloaders=loader(),
        min_lr=1e-8,
        max_lr=0.1,
        num_training=4 * BATCHES_PER_EPOCH,
        early_stop_threshold=None,
        update_attr=False,
    )
    assert len(finder.results["lr"]) == 4 * BATCHES_PER_EPOCH
    assert finder.suggestion(skip_begin=2, skip_end=1) is not None
    check_sgdw_schedule_scaling(
        model.steps,
        lr_ref=0.01,
        weight_decay=SCHEDULE_SGDW["weight_decay"],
        momentum=SCHEDULE_SGDW["momentum"],
    )


# -- racing λ for a LightningModule -------------------------------------------------------
# The documented way (docs/integrations.md): a callback reports the validation loss after
# each epoch from inside Trainer.fit, and l2optim.selection.Reported makes the function a
# training function the race pauses between epochs.

RACE_EPOCHS, RACE_ROWS = 4, 64


class Regularised(pl.LightningModule):
    """The MLP at weight decay λ, with a validation step; AdamW under a cosine schedule."""

    def __init__(self, lam: float) -> None:
        super().__init__()
        self.net = mlp(0)
        self.lam = lam

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        optimizer = l2optim.AdamW(l2optim.decay_groups(self.net, self.lam), lr=0.02)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=RACE_EPOCHS)
        return {"optimizer": optimizer, "lr_scheduler": schedule}


class ReportValidationLoss(pl.Callback):
    def __init__(self, report) -> None:
        self.report = report

    def on_validation_epoch_end(self, trainer, module) -> None:
        if not trainer.sanity_checking:
            self.report(float(trainer.callback_metrics["val_loss"]))


def lightning_run(lam, train_idx, val_idx, report):
    """The user's Lightning training of one λ on some rows, reporting after each epoch."""
    x, y = regression_data(RACE_ROWS)
    trainer = pl.Trainer(
        **TRAINER, max_epochs=RACE_EPOCHS, callbacks=[ReportValidationLoss(report)]
    )
    trainer.fit(
        Regularised(lam),
        DataLoader(TensorDataset(x[train_idx], y[train_idx]), batch_size=16),
        DataLoader(TensorDataset(x[val_idx], y[val_idx]), batch_size=64),
    )


def test_a_lightning_module_races_lambda_and_its_paused_runs_continue():
    race = l2optim.select_lambda_fast(
        l2optim.selection.Reported(lightning_run),
        n_samples=RACE_ROWS, epochs=RACE_EPOCHS, bounds=(1e-3, 1.0), budget=3,
    )
    assert race.run_equivalents <= 3 and 1e-3 <= race.lambda_chosen <= 1.0
    # A run paused after the first rung and continued scores, after the last rung's
    # epochs, what one uninterrupted Lightning training scores then: the race continued
    # its schedule, it did not restart it.
    final = race.rungs[-1]  # survivors of every rung (refinements trained in one go)
    assert race.rungs[0].epochs < final.epochs
    splits = l2optim.kfold_splits(RACE_ROWS, 2, random_state=0)
    lam = float(final.lambdas[0])
    for (train_idx, val_idx), score in zip(splits, final.scores[0], strict=True):
        reported = []
        lightning_run(lam * race.train_scale, train_idx, val_idx, reported.append)
        assert score == pytest.approx(reported[final.epochs - 1], rel=1e-6)


# -- λ on a schedule --------------------------------------------------------------------


class ScheduledDecay(Regression):
    """AdamW with a cosine lr and a cosine λ, both stepped by Lightning every batch.

    Lightning steps schedulers that are not torch's LRScheduler through this hook.
    """

    def lr_scheduler_step(self, scheduler, metric):
        scheduler.step()


def adamw_with_decay_schedule(net: nn.Module):
    optimizer = l2optim.AdamW(l2optim.decay_groups(net, 0.04), lr=1e-2)
    return [optimizer], [
        {"scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=20),
         "interval": "step"},
        {"scheduler": l2optim.CosineWeightDecay(optimizer, 0.4, total_steps=16),
         "interval": "step"},
    ]


def test_a_weight_decay_schedule_resumes_bit_exact(tmp_path: Path) -> None:
    uninterrupted = ScheduledDecay(adamw_with_decay_schedule)
    pl.Trainer(**TRAINER, max_epochs=4).fit(uninterrupted, loader())
    final = uninterrupted.trainer.optimizers[0].param_groups[0]["weight_decay"]
    assert final == pytest.approx(0.4)  # the schedule ran its 16 steps

    first_half = ScheduledDecay(adamw_with_decay_schedule)
    trainer = pl.Trainer(**TRAINER, max_epochs=2)
    trainer.fit(first_half, loader())
    checkpoint = tmp_path / "half.ckpt"
    trainer.save_checkpoint(checkpoint)

    resumed = ScheduledDecay(adamw_with_decay_schedule, seed=1)
    trainer = pl.Trainer(**TRAINER, max_epochs=4)
    trainer.fit(resumed, loader(), ckpt_path=checkpoint)
    assert_bit_exact(resumed.parameters(), uninterrupted.parameters())
