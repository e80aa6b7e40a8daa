"""l2optim inside the 🤗 Trainer: resuming a run, and which parameters each side decays.

The models are tiny ones built from configs (nothing is downloaded); the data are
synthetic token sequences.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _frameworks import require
from _training import OPTIMIZERS, assert_bit_exact
from torch import nn

import l2optim

transformers = require("transformers")

STEPS, SAVE_AT, BATCH, LENGTH, VOCAB = 6, 3, 8, 8, 32
WEIGHT_DECAY = 0.05


class Sequences(torch.utils.data.Dataset):
    """Random token sequences labelled by whether their token sum is above the median."""

    def __init__(self, n: int = 64, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.input_ids = torch.randint(0, VOCAB, (n, LENGTH), generator=generator)
        sums = self.input_ids.sum(1)
        self.labels = (sums > sums.median()).long()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids[i], "labels": self.labels[i]}


def tiny_bert(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=LENGTH,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        num_labels=2,
    )
    return transformers.BertForSequenceClassification(config)


def training_arguments(output_dir: Path) -> transformers.TrainingArguments:
    return transformers.TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=BATCH,
        max_steps=STEPS,
        weight_decay=WEIGHT_DECAY,
        lr_scheduler_type="linear",
        warmup_steps=2,
        save_strategy="steps",
        save_steps=SAVE_AT,
        logging_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def trainer(model: nn.Module, output_dir: Path, name: str) -> transformers.Trainer:
    cls, settings = OPTIMIZERS[name]
    # The Trainer builds the param groups, with args.weight_decay for the decayed one.
    settings = {k: v for k, v in settings.items() if k != "weight_decay"}
    return transformers.Trainer(
        model=model,
        args=training_arguments(output_dir),
        train_dataset=Sequences(),
        optimizer_cls_and_kwargs=(cls, settings),
    )


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_resume_from_checkpoint_is_bit_exact(name: str, tmp_path: Path) -> None:
    uninterrupted = tiny_bert()
    run = trainer(uninterrupted, tmp_path / "run", name)
    run.train()
    assert isinstance(
        run.optimizer.optimizer if hasattr(run.optimizer, "optimizer") else run.optimizer,
        OPTIMIZERS[name][0],
    )
    assert [g["weight_decay"] for g in run.optimizer.param_groups] == [WEIGHT_DECAY, 0.0]

    resumed = tiny_bert(seed=1)  # the checkpoint brings the weights
    trainer(resumed, tmp_path / "resumed", name).train(
        resume_from_checkpoint=str(tmp_path / "run" / f"checkpoint-{SAVE_AT}")
    )
    assert_bit_exact(resumed.parameters(), uninterrupted.parameters())


# -- which parameters decay -----------------------------------------------------------------


# Tiny models of the architectures whose parameter names the two rules read differently.
# (model class, config class, config) of transformers, each tiny.
TINY_CONFIGS = {
    "gpt2": (
        "GPT2LMHeadModel",
        "GPT2Config",
        {"n_positions": LENGTH, "n_embd": 16, "n_head": 2, "bos_token_id": 0, "eos_token_id": 0},
    ),
    "t5": (
        "T5ForConditionalGeneration",
        "T5Config",
        {"d_model": 16, "d_kv": 8, "d_ff": 32, "num_heads": 2, "relative_attention_num_buckets": 8},
    ),
    "convnext": (
        "ConvNextForImageClassification",
        "ConvNextConfig",
        {"num_stages": 2, "hidden_sizes": [8, 16], "depths": [1, 1]},
    ),
    "vit": (
        "ViTForImageClassification",
        "ViTConfig",
        {"image_size": 16, "patch_size": 8, "hidden_size": 16, "intermediate_size": 32},
    ),
    "resnet": (
        "ResNetForImageClassification",
        "ResNetConfig",
        {"embedding_size": 8, "hidden_sizes": [8, 16], "depths": [1, 1], "layer_type": "basic"},
    ),
}
# One layer, two heads, few tokens; unknown keys are ignored by each config class.
TINY_COMMON = {
    "vocab_size": VOCAB,
    "n_layer": 1,
    "num_layers": 1,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_labels": 2,
}


def tiny_model(name: str) -> nn.Module:
    """A tiny model of the architectures whose parameter names the two rules read differently."""
    torch.manual_seed(0)
    if name == "bert":
        return tiny_bert()
    if name == "torch_transformer":
        layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True)
        return nn.TransformerEncoder(layer, num_layers=1)
    model_class, config_class, settings = TINY_CONFIGS[name]
    config = getattr(transformers, config_class)(**TINY_COMMON, **settings)
    return getattr(transformers, model_class)(config)


@pytest.fixture(scope="module")
def trainer_decay_names(tmp_path_factory):
    """The Trainer's own rule, from a Trainer (the method takes any model)."""
    output_dir = tmp_path_factory.mktemp("trainer")
    hf_trainer = transformers.Trainer(
        model=tiny_bert(),
        args=transformers.TrainingArguments(
            output_dir=str(output_dir), use_cpu=True, report_to="none"
        ),
    )
    # It also lists the second name of a tied weight (GPT-2's lm_head.weight); the Trainer
    # itself only looks up the names named_parameters() gives, and so does this test.
    return lambda model: (
        set(hf_trainer.get_decay_parameter_names(model)) & set(dict(model.named_parameters()))
    )


def l2optim_decay_names(model: nn.Module) -> set[str]:
    decayed = {
        id(p)
        for group in l2optim.decay_groups(model, WEIGHT_DECAY)
        if group["weight_decay"] == WEIGHT_DECAY
        for p in group["params"]
    }
    return {name for name, p in model.named_parameters() if id(p) in decayed}


def names_where(model: nn.Module, predicate) -> set[str]:
    return {name for name, p in model.named_parameters() if predicate(name, p)}


def batch_norm_weights(model: nn.Module) -> set[str]:
    return {
        f"{module_name}.weight"
        for module_name, module in model.named_modules()
        if isinstance(module, nn.BatchNorm2d)
    }


# What l2optim decays and the Trainer does not (+), and the reverse (-), per model: the
# rows of the comparison table in docs/integrations.md.
DIFFERENCES = {
    "bert": lambda m: (set(), set()),
    "gpt2": lambda m: (set(), set()),
    # T5's relative position table is an nn.Embedding whose name contains "bias".
    "t5": lambda m: (names_where(m, lambda n, p: "relative_attention_bias" in n), set()),
    # ConvNeXt's layer scale is 1-D and neither a bias nor a norm.
    "convnext": lambda m: (set(), names_where(m, lambda n, p: n.endswith("layer_scale_parameter"))),
    # ViT's class token and position table (3-D): both decay them (no no_weight_decay()).
    "vit": lambda m: (set(), set()),
    # MultiheadAttention's in_proj_bias: 1-D, and "bias" is in its name.
    "torch_transformer": lambda m: (set(), set()),
    # ResNet's BatchNorm layers are named "normalization", which no name pattern of the
    # Trainer's matches: their weights decay there (their biases are exempt by name).
    "resnet": lambda m: (set(), batch_norm_weights(m)),
}


@pytest.mark.parametrize("model_name", list(DIFFERENCES))
def test_decay_groups_against_the_trainers_rule(model_name: str, trainer_decay_names) -> None:
    model = tiny_model(model_name)
    ours, theirs = l2optim_decay_names(model), trainer_decay_names(model)
    only_ours, only_theirs = DIFFERENCES[model_name](model)
    assert ours - theirs == only_ours
    assert theirs - ours == only_theirs
    if model_name in ("t5", "convnext", "resnet"):
        assert only_ours or only_theirs  # the documented difference is really there
    assert DECAYED_BY_BOTH.get(model_name, set()) <= ours & theirs


# Table rows where both rules decay: embedding tables, and ViT's 3-D tokens (HF models
# have no no_weight_decay()).
DECAYED_BY_BOTH = {
    "bert": {"bert.embeddings.word_embeddings.weight"},
    "gpt2": {"transformer.wte.weight"},
    "vit": {"vit.embeddings.cls_token", "vit.embeddings.position_embeddings"},
    "torch_transformer": {"layers.0.self_attn.in_proj_weight"},
}


# -- racing λ for a Trainer setup --------------------------------------------------------
# The documented way (docs/integrations.md): a TrainerCallback reports the evaluation loss
# after each epoch's evaluation, and l2optim.selection.Reported makes the function a
# training function the race pauses between epochs.

RACE_EPOCHS, RACE_ROWS = 3, 64


class ReportEvalLoss(transformers.TrainerCallback):
    def __init__(self, report) -> None:
        self.report = report

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        self.report(metrics["eval_loss"])


def trainer_run(lam, train_idx, val_idx, report, output_dir, epochs=RACE_EPOCHS):
    """The user's Trainer setup for one λ: AdamW from the Trainer's own weight decay
    rule, a linear schedule, an evaluation every epoch."""
    data = Sequences(RACE_ROWS)
    args = transformers.TrainingArguments(
        output_dir=str(output_dir),
        per_device_train_batch_size=BATCH,
        num_train_epochs=epochs,
        weight_decay=lam,
        lr_scheduler_type="linear",
        eval_strategy="epoch",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        use_cpu=True,
        seed=0,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    transformers.Trainer(
        model=tiny_bert(),
        args=args,
        train_dataset=torch.utils.data.Subset(data, train_idx.tolist()),
        eval_dataset=torch.utils.data.Subset(data, val_idx.tolist()),
        optimizer_cls_and_kwargs=(l2optim.AdamW, {"lr": 5e-3}),
        callbacks=[ReportEvalLoss(report)],
    ).train()


def test_a_trainer_setup_races_lambda_and_its_paused_runs_continue(tmp_path: Path) -> None:
    def run(lam, train_idx, val_idx, report):
        trainer_run(lam, train_idx, val_idx, report, tmp_path / f"{lam:.6g}-{val_idx[0]}")

    race = l2optim.select_lambda_fast(
        l2optim.selection.Reported(run),
        n_samples=RACE_ROWS, epochs=RACE_EPOCHS, bounds=(1e-3, 1.0), budget=3,
    )
    assert race.run_equivalents <= 3 and 1e-3 <= race.lambda_chosen <= 1.0
    final = race.rungs[-1]  # survivors of every rung (refinements trained in one go)
    assert race.rungs[0].epochs < final.epochs
    splits = l2optim.kfold_splits(RACE_ROWS, 2, random_state=0)
    lam = float(final.lambdas[0])
    # A run paused after the first rung and continued scores, after the last rung's
    # epochs, what one uninterrupted training scores then: the race continued its
    # schedule, it did not restart it.
    for (train_idx, val_idx), score in zip(splits, final.scores[0], strict=True):
        reported = []
        trainer_run(lam * race.train_scale, train_idx, val_idx, reported.append,
                    tmp_path / "uninterrupted")
        assert score == pytest.approx(reported[final.epochs - 1], rel=1e-6)


# -- λ on a schedule ------------------------------------------------------------------------


class CosineWeightDecayCallback(transformers.TrainerCallback):
    """λ from the Trainer's weight_decay to ``final`` along a cosine over the run.

    λ_t is a function of the step: a resumed run makes its scheduler at the restored
    global step (the optimizer's checkpoint carries each group's initial λ), so the Trainer
    need not know about it.
    """

    def __init__(self, final: float) -> None:
        self.final, self.schedule = final, None

    def on_train_begin(self, args, state, control, optimizer=None, **kwargs):
        inner = getattr(optimizer, "optimizer", optimizer)
        self.schedule = l2optim.CosineWeightDecay(
            inner, self.final, total_steps=args.max_steps, last_epoch=state.global_step - 1
        )

    def on_step_end(self, args, state, control, **kwargs):
        self.schedule.step()


def test_a_weight_decay_schedule_in_a_callback_resumes_bit_exact(tmp_path: Path) -> None:
    def run(model, output_dir, **train):
        decay = CosineWeightDecayCallback(final=0.5)
        setup = trainer(model, output_dir, "AdamW")
        setup.add_callback(decay)
        setup.train(**train)
        return decay

    uninterrupted = tiny_bert()
    decay = run(uninterrupted, tmp_path / "run")
    assert decay.schedule.get_last_weight_decay() == [pytest.approx(0.5), 0.0]
    resumed = tiny_bert(seed=1)
    run(resumed, tmp_path / "resumed",
        resume_from_checkpoint=str(tmp_path / "run" / f"checkpoint-{SAVE_AT}"))
    assert_bit_exact(resumed.parameters(), uninterrupted.parameters())
