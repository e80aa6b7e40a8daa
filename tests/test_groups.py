"""``decay_groups``: weights decay; biases, normalisation layers and chosen names do not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import l2optim
from l2optim._groups import is_normalization


class MyRMSNorm(nn.Module):
    """A user's own normalisation layer, as model libraries define them."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.scale


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.pos_embed = nn.Parameter(torch.zeros(1, 4))
        self.conv = nn.Conv1d(4, 4, 1)
        self.batch_norm = nn.BatchNorm1d(4)
        self.layer_norm = nn.LayerNorm(4)
        self.group_norm = nn.GroupNorm(2, 4)
        self.rms_norm = nn.RMSNorm(4)
        self.my_norm = MyRMSNorm(4)
        self.head = nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight  # tied
        self.frozen = nn.Linear(4, 4)
        self.frozen.requires_grad_(False)


def _names(model: nn.Module, params: list[nn.Parameter]) -> set[str]:
    by_id = {id(p): name for name, p in model.named_parameters()}
    return {by_id[id(p)] for p in params}


DECAYED = {"embed.weight", "pos_embed", "conv.weight"}
NORMS = {
    "batch_norm.weight", "batch_norm.bias", "layer_norm.weight", "layer_norm.bias",
    "group_norm.weight", "group_norm.bias", "rms_norm.weight", "my_norm.scale",
}  # fmt: skip


def test_weights_decay_and_biases_and_norms_do_not() -> None:
    model = Net()
    decayed, undecayed = l2optim.decay_groups(model, 0.05)
    assert decayed["weight_decay"] == 0.05 and undecayed["weight_decay"] == 0.0
    assert _names(model, decayed["params"]) == DECAYED
    assert _names(model, undecayed["params"]) == NORMS | {"conv.bias"}


def test_every_trainable_parameter_appears_once() -> None:
    model = Net()
    params = [p for g in l2optim.decay_groups(model, 0.05) for p in g["params"]]
    assert len(params) == len({id(p) for p in params})
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in params} == trainable
    # The tied embedding/head weight is one tensor, listed once (named by its first owner).
    assert sum(p is model.embed.weight for p in params) == 1


def test_embeddings_on_request_and_exclude_patterns() -> None:
    model = Net()
    decayed, undecayed = l2optim.decay_groups(model, 0.1, decay_embeddings=False, exclude=["pos_*"])
    assert _names(model, decayed["params"]) == {"conv.weight"}
    # Tied to the head, the embedding is still exempt: any exempt use wins.
    assert {"embed.weight", "pos_embed"} <= _names(model, undecayed["params"])


def test_exclude_accepts_a_single_pattern() -> None:
    model = Net()
    decayed, _ = l2optim.decay_groups(model, 0.1, exclude="conv.*")
    assert _names(model, decayed["params"]) == {"embed.weight", "pos_embed"}


def test_empty_group_is_left_out() -> None:
    groups = l2optim.decay_groups(nn.Linear(3, 2, bias=False), 0.1)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.1


@pytest.mark.parametrize(
    "module, expected",
    [
        (nn.BatchNorm2d(3), True),
        (nn.InstanceNorm1d(3, affine=True), True),
        (nn.LocalResponseNorm(2), True),
        (MyRMSNorm(3), True),
        (nn.Linear(3, 3), False),
        (nn.Embedding(3, 3), False),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else str(v),
)
def test_is_normalization(module: nn.Module, expected: bool) -> None:
    assert is_normalization(module) is expected


def test_groups_feed_an_optimizer_that_leaves_exempt_parameters_alone() -> None:
    """With zero gradients only decay moves a weight: the exempt ones stay put."""
    model = Net()
    optimizer = l2optim.SGDW(l2optim.decay_groups(model, 0.5), lr=0.1)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p) if p.requires_grad else None
    optimizer.step()
    for name, p in model.named_parameters():
        factor = 0.95 if name in DECAYED else 1.0
        torch.testing.assert_close(p.detach(), before[name] * factor, msg=name)
