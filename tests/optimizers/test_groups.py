"""``decay_groups``: weights decay; biases, normalisation layers and chosen names do not."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

import l2optim
from l2optim.optimizers._groups import is_normalization


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


# -- the ecosystem's rule: at most one dimension, the model's own list, torch's biases ----


class LayerScaleBlock(nn.Module):
    """ConvNeXt's layer scale and EVA's separate q/v biases: 1-D, not named "bias"."""

    def __init__(self, dim: int = 4) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, dim, bias=False)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))
        self.q_bias = nn.Parameter(torch.zeros(dim))
        self.v_bias = nn.Parameter(torch.zeros(dim))


class TinyViT(nn.Module):
    """A ViT's position embedding and class token, exempt through ``no_weight_decay()``."""

    def __init__(self, dim: int = 4) -> None:
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, 5, dim))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.block = LayerScaleBlock(dim)
        self.attn = nn.MultiheadAttention(dim, 2, add_bias_kv=True)

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token", "dist_token"}  # timm lists absent names too


def _groups_by_name(groups: list[dict]) -> tuple[set[str], set[str]]:
    decayed = {n for g in groups if g["weight_decay"] for n in g["param_names"]}
    exempt = {n for g in groups if not g["weight_decay"] for n in g["param_names"]}
    return decayed, exempt


def test_the_default_exempts_what_timm_exempts() -> None:
    decayed, exempt = _groups_by_name(l2optim.decay_groups(TinyViT(), 0.05))
    assert decayed == {"block.proj.weight", "attn.in_proj_weight", "attn.out_proj.weight"}
    assert exempt == {
        "pos_embed", "cls_token", "block.gamma", "block.q_bias", "block.v_bias",
        "attn.in_proj_bias", "attn.bias_k", "attn.bias_v", "attn.out_proj.bias",
    }  # fmt: skip


def test_the_old_rule_is_one_argument_away() -> None:
    decayed, exempt = _groups_by_name(
        l2optim.decay_groups(TinyViT(), 0.05, decay_1d=True, use_no_weight_decay=False)
    )
    assert {"pos_embed", "cls_token", "block.gamma", "block.q_bias", "block.v_bias"} <= decayed
    # No bias of torch's own layers is decayed, under any rule (bias_k/bias_v are 3-D).
    assert {"attn.in_proj_bias", "attn.bias_k", "attn.bias_v", "attn.out_proj.bias"} == exempt


def test_groups_carry_the_parameter_names_into_the_optimizer() -> None:
    model = TinyViT()
    groups = l2optim.decay_groups(model, 0.05)
    named = dict(model.named_parameters())
    for group in groups:
        assert [named[n] for n in group["param_names"]] == group["params"]
    optimizer = l2optim.AdamW(groups, lr=1e-3)
    saved = optimizer.state_dict()["param_groups"]
    assert [g["param_names"] for g in saved] == [g["param_names"] for g in groups]


@pytest.mark.parametrize(
    "wrap",
    [
        lambda m: nn.DataParallel(m),
        lambda m: torch.compile(m, backend="eager"),
        lambda m: torch.compile(nn.DataParallel(m), backend="eager"),
    ],
    ids=["DataParallel", "compiled", "compiled-DataParallel"],
)
def test_a_wrapped_model_is_grouped_by_its_own_names(wrap) -> None:
    model = TinyViT()
    plain = l2optim.decay_groups(model, 0.05, exclude=["block.proj.*"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the pattern must match through the wrapper
        wrapped = l2optim.decay_groups(wrap(model), 0.05, exclude=["block.proj.*"])
    assert _groups_by_name(wrapped) == _groups_by_name(plain)
    assert "block.proj.weight" in _groups_by_name(wrapped)[1]


def test_a_pattern_that_matches_nothing_is_reported() -> None:
    with pytest.warns(UserWarning, match=r"'pos_embd' matches no trainable parameter.*pos_embed"):
        l2optim.decay_groups(TinyViT(), 0.05, exclude=["pos_embd"])


def test_parameters_instead_of_the_model_is_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match=r"needs the model itself .*got generator"):
        l2optim.decay_groups(TinyViT().parameters(), 0.05)


@pytest.mark.parametrize("weight_decay", [-0.1, float("nan"), float("inf")], ids=str)
def test_a_bad_weight_decay_is_named(weight_decay: float) -> None:
    with pytest.raises(ValueError, match="weight_decay"):
        l2optim.decay_groups(TinyViT(), weight_decay)
