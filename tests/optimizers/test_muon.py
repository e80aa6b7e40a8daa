"""Muon for the hidden matrices, AdamW for the rest, both decayed (l2optim.muon_groups).

Oracles: ``torch.optim.Muon``'s own decay is decoupled decay with the ``"lr"`` scaling,
so ``with_weight_decay(Muon)`` decoupled equals it bit for bit; with zero gradients every
update is zero and each decayed weight ends at p₀·(1 − lr·λ)^T, in both optimizers.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import l2optim

needs_muon = pytest.mark.skipif(
    not hasattr(torch.optim, "Muon"), reason="torch.optim.Muon arrived in torch 2.9"
)


class TinyLM(nn.Module):
    """An embedding, a pre-norm MLP block and an output head: every kind of parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 8)
        self.norm = nn.LayerNorm(8)
        self.up = nn.Linear(8, 16)
        self.down = nn.Linear(16, 8, bias=False)
        self.head = nn.Linear(8, 20)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.embed(tokens)
        h = h + self.down(torch.relu(self.up(self.norm(h))))
        return self.head(h)


def test_hidden_matrices_go_to_muon_and_the_rest_elsewhere():
    model = TinyLM()
    muon, other = l2optim.muon_groups(model, 0.1, fallback=["head.*"])
    assert [(g["param_names"], g["weight_decay"]) for g in muon] == [
        (["up.weight", "down.weight"], 0.1)
    ]
    assert [(g["param_names"], g["weight_decay"]) for g in other] == [
        (["embed.weight", "head.weight"], 0.1),
        (["norm.weight", "norm.bias", "up.bias", "head.bias"], 0.0),
    ]
    # Every trainable parameter once, in one of the two.
    seen = [id(p) for g in muon + other for p in g["params"]]
    assert sorted(seen) == sorted(id(p) for p in model.parameters())
    for group in muon:
        assert all(p.ndim == 2 for p in group["params"])


def test_options_pass_to_decay_groups_and_unmatched_patterns_warn():
    model = torch.compile(TinyLM(), backend="eager")  # names as the user wrote the model
    with pytest.warns(UserWarning, match="muon_groups: fallback pattern 'lm_head.*' matches no"):
        muon, other = l2optim.muon_groups(model, 0.1, fallback=["lm_head.*"], exclude=["down.*"])
    # down.weight is exempt from decay but still a hidden matrix: Muon, at λ = 0.
    assert [(g["param_names"], g["weight_decay"]) for g in muon] == [
        (["up.weight", "head.weight"], 0.1),
        (["down.weight"], 0.0),
    ]
    assert other[0]["param_names"] == ["embed.weight"]


@needs_muon
def test_decoupled_decay_is_muons_own_bit_for_bit():
    def run(make):
        torch.manual_seed(0)
        weights = [nn.Parameter(torch.randn(6, 4)), nn.Parameter(torch.randn(3, 5))]
        optimizer = make(weights)
        schedule = torch.optim.lr_scheduler.StepLR(optimizer, 1, 0.8)
        generator = torch.Generator().manual_seed(1)
        for _ in range(6):
            for w in weights:
                w.grad = torch.randn(w.shape, generator=generator)
            optimizer.step()
            schedule.step()
        return weights

    MuonW = l2optim.with_weight_decay(torch.optim.Muon)
    ours = run(lambda w: MuonW(w, lr=0.02, weight_decay=0.1, decoupled_weight_decay=True))
    theirs = run(lambda w: torch.optim.Muon(w, lr=0.02, weight_decay=0.1))
    undecayed = run(lambda w: torch.optim.Muon(w, lr=0.02, weight_decay=0.0))
    for a, b, c in zip(ours, theirs, undecayed, strict=True):
        assert torch.equal(a, b)
        assert not torch.equal(a, c)


@needs_muon
def test_a_model_trains_with_muon_and_adamw_both_decayed():
    torch.manual_seed(0)
    model = TinyLM()
    muon_part, adamw_part = l2optim.muon_groups(model, 0.1, fallback=["head.*"])
    muon = torch.optim.Muon(muon_part, lr=0.02)
    adamw = l2optim.AdamW(adamw_part, lr=1e-2)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    # Zero gradients: every update is zero, only the decay moves the weights.
    for _ in range(5):
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        muon.step()
        adamw.step()
    after = dict(model.named_parameters())
    for name in ["up.weight", "down.weight"]:
        torch.testing.assert_close(after[name].detach(), before[name] * (1 - 0.02 * 0.1) ** 5)
    for name in ["embed.weight", "head.weight"]:
        torch.testing.assert_close(after[name].detach(), before[name] * (1 - 1e-2 * 0.1) ** 5)
    for name in ["norm.weight", "norm.bias", "up.bias", "head.bias"]:
        assert torch.equal(after[name], before[name])
    # And it learns: next-token prediction on a fixed sequence.
    tokens = torch.arange(20).repeat(4)
    losses = []
    for _ in range(30):
        muon.zero_grad()
        adamw.zero_grad()
        loss = nn.functional.cross_entropy(model(tokens[:-1]), tokens[1:])
        loss.backward()
        muon.step()
        adamw.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
