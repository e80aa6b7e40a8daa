"""l2optim.decay_groups on real timm models exempts what timm's own optimizer factory exempts.

timm's rule (``timm.optim.param_groups_weight_decay``, used by ``create_optimizer_v2``):
no decay for every parameter with ndim <= 1, every name ending in ".bias", and the names
(glob patterns) the model lists in ``no_weight_decay()``. Models are built from tiny
configs with ``pretrained=False``; nothing is downloaded.
"""

from __future__ import annotations

import pytest
import torch
from _frameworks import require
from _training import assert_bit_exact
from torch import nn

import l2optim

timm = require("timm")
from timm.optim import create_optimizer_v2  # noqa: E402

WEIGHT_DECAY = 0.05
IMAGE = 16


def create(name: str, **config) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=2, **config)


TRANSFORMER = {"img_size": IMAGE, "patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2}
MODELS = {
    # Layer scale ``gamma`` (1-D) in every block.
    "convnext": lambda: create("convnext_atto", depths=(1, 1, 1, 1), dims=(8, 16, 32, 64)),
    # ``attn.q_bias`` and ``attn.v_bias`` (1-D, not named "bias"); pos_embed, cls_token.
    "eva": lambda: create("eva02_tiny_patch14_224", **TRANSFORMER),
    # ``pos_embed`` and ``cls_token`` (3-D) only through no_weight_decay(); ``ls1.gamma``.
    "vit": lambda: create("vit_tiny_patch16_224", **TRANSFORMER, init_values=1e-5),
    # torch's own layers: MultiheadAttention's ``in_proj_bias``, LayerNorm, Linear.
    "torch_transformer": lambda: nn.TransformerEncoder(
        nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True), num_layers=1
    ),
    # Conv biases and BatchNorm.
    "convnet": lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1)),
    # Embedding tables, one of them named like T5's relative position table.
    "embeddings": lambda: nn.ModuleDict(
        {
            "word_embeddings": nn.Embedding(16, 8),
            "relative_attention_bias": nn.Embedding(8, 2),
            "norm": nn.LayerNorm(8),
        }
    ),
}


def decayed_names(model: nn.Module, groups: list[dict]) -> set[str]:
    decayed = {id(p) for g in groups if g["weight_decay"] == WEIGHT_DECAY for p in g["params"]}
    return {name for name, p in model.named_parameters() if id(p) in decayed}


def timm_decayed_names(model: nn.Module) -> set[str]:
    optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-3, weight_decay=WEIGHT_DECAY)
    return decayed_names(model, optimizer.param_groups)


# What each model must leave undecayed, named independently of both rules.
EXPECTED_EXEMPT = {
    "convnext": lambda n: (
        n.endswith((".gamma", ".bias"))
        or "norm" in n
        or n.startswith(
            (
                "stem.1.",
                "stages.1.downsample.0.",
                "stages.2.downsample.0.",
                "stages.3.downsample.0.",
            )
        )
    ),
    "eva": lambda n: (
        n in {"pos_embed", "cls_token"} or n.endswith(("_bias", ".bias")) or "norm" in n
    ),
    "vit": lambda n: (
        n in {"pos_embed", "cls_token"} or n.endswith((".gamma", ".bias")) or "norm" in n
    ),
    "torch_transformer": lambda n: n.endswith(("bias", "norm1.weight", "norm2.weight")),
    "convnet": lambda n: n.endswith(".bias") or n == "1.weight",
    "embeddings": lambda n: n.startswith("norm."),
}


@pytest.mark.parametrize("model_name", list(MODELS))
def test_decay_groups_exempts_what_timm_exempts(model_name: str) -> None:
    model = MODELS[model_name]()
    ours = decayed_names(model, l2optim.decay_groups(model, WEIGHT_DECAY))
    theirs = timm_decayed_names(model)
    assert ours == theirs
    exempt = {n for n, _ in model.named_parameters() if EXPECTED_EXEMPT[model_name](n)}
    assert theirs == set(dict(model.named_parameters())) - exempt


def test_convnext_trains_like_timms_optimizer() -> None:
    """l2optim.AdamW over decay_groups takes the steps of timm's AdamW over its own groups."""
    x = torch.randn(8, 3, IMAGE * 2, IMAGE * 2, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 2
    models, optimizers = [], []
    for build in ("l2optim", "timm"):
        model = MODELS["convnext"]()
        if build == "l2optim":
            # Single-tensor, as torch's own default on the CPU: the same kernels, bit for bit.
            groups = l2optim.decay_groups(model, WEIGHT_DECAY)
            optimizer = l2optim.AdamW(groups, lr=1e-2, foreach=False)
        else:
            optimizer = create_optimizer_v2(model, opt="adamw", lr=1e-2, weight_decay=WEIGHT_DECAY)
            assert type(optimizer) is torch.optim.AdamW
        models.append(model)
        optimizers.append(optimizer)
    for _ in range(3):
        for model, optimizer in zip(models, optimizers, strict=True):
            optimizer.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()
    ours, theirs = models
    assert_bit_exact(ours.parameters(), theirs.parameters())
