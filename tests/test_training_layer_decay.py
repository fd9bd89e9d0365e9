"""Layer-wise learning-rate decay: the rates each parameter gets, read back from the optimizer the Trainer builds."""

import pytest
import torch
from torch import nn
from transformers import TrainingArguments

from training.arguments import ModelArguments
from training.layer_decay import layer_decay_groups
from training.model import build_config, build_model
from training.trainer import ChestXray14Trainer

TINY_VIT = "hidden_size=16,num_hidden_layers=3,num_attention_heads=2,intermediate_size=32,image_size=16,patch_size=8"
PEAK = 1e-3
DECAY = 0.5


def tiny(model_type="vit", overrides=TINY_VIT):
    model_args = ModelArguments(model_type=model_type, config_overrides=overrides)
    return build_model(model_args, build_config(model_args))


def optimizer_rates(model, tmp_path, **extra):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, learning_rate=PEAK, weight_decay=0.05,
                             report_to="none", **extra)
    trainer = ChestXray14Trainer(model=model, args=args, layer_decay=DECAY)
    trainer.create_optimizer()
    by_parameter = {id(p): (group["lr"], group["weight_decay"]) for group in trainer.optimizer.param_groups
                    for p in group["params"]}
    return trainer, {name: by_parameter[id(p)] for name, p in model.named_parameters()}


def expected_scale(name, blocks=3):
    """The documented rule, written out: embeddings d**(L+1), block i d**(L-i), the rest 1."""
    if ".layers." in name:
        block = int(name.split(".layers.")[1].split(".")[0])
        return DECAY ** (blocks - block)
    return DECAY ** (blocks + 1) if ".embeddings." in name else 1.0


def test_each_parameter_trains_at_the_documented_rate_for_its_depth(tmp_path):
    model = tiny()
    _, rates = optimizer_rates(model, tmp_path)
    for name, (rate, _) in rates.items():
        assert rate == pytest.approx(PEAK * expected_scale(name)), name
    assert rates["classifier.weight"][0] == pytest.approx(PEAK)
    assert rates["vit.layers.2.mlp.fc1.weight"][0] == pytest.approx(PEAK * 0.5)
    assert rates["vit.layers.0.mlp.fc1.weight"][0] == pytest.approx(PEAK * 0.125)
    assert rates["vit.embeddings.patch_embeddings.projection.weight"][0] == pytest.approx(PEAK * 0.0625)


def test_biases_norms_position_embeddings_and_class_token_have_no_weight_decay(tmp_path):
    _, rates = optimizer_rates(tiny(), tmp_path)
    no_decay = {name for name, (_, decay) in rates.items() if decay == 0.0}
    assert {"vit.embeddings.cls_token", "vit.embeddings.position_embeddings", "vit.layernorm.weight",
            "classifier.bias", "vit.layers.0.layernorm_before.weight", "vit.layers.1.mlp.fc1.bias"} <= no_decay
    assert rates["vit.layers.1.mlp.fc1.weight"][1] == 0.05 and rates["classifier.weight"][1] == 0.05


def test_the_ratios_hold_through_warmup_and_cosine_decay(tmp_path):
    model = tiny()
    trainer, _ = optimizer_rates(model, tmp_path, lr_scheduler_type="cosine", warmup_steps=3)
    trainer.create_scheduler(num_training_steps=10, optimizer=trainer.optimizer)
    head = trainer.optimizer.param_groups[0]
    assert head["lr_scale"] == 1.0  # the first group is the head's, whose rate the Trainer logs
    for _ in range(6):
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
        for group in trainer.optimizer.param_groups:
            assert group["lr"] == pytest.approx(head["lr"] * group["lr_scale"])


def test_dinov2_blocks_are_found_under_their_own_names(tmp_path):
    model = tiny("dinov2", "hidden_size=16,num_hidden_layers=3,num_attention_heads=2,mlp_ratio=2,"
                           "image_size=28,patch_size=14")
    _, rates = optimizer_rates(model, tmp_path)
    assert rates["dinov2.encoder.layer.0.mlp.fc1.weight"][0] == pytest.approx(PEAK * DECAY ** 3)
    assert rates["dinov2.embeddings.mask_token"][0] == pytest.approx(PEAK * DECAY ** 4)
    assert rates["dinov2.layernorm.weight"][0] == pytest.approx(PEAK)


class TimmNamedViT(nn.Module):
    """A stand-in with the parameter names of a timm ViT inside transformers' TimmWrapper (``timm_model.*``)."""

    def __init__(self, blocks=2, width=8):
        super().__init__()
        self.timm_model = nn.Module()
        self.timm_model.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.timm_model.pos_embed = nn.Parameter(torch.zeros(1, 5, width))
        self.timm_model.patch_embed = nn.Module()
        self.timm_model.patch_embed.proj = nn.Conv2d(3, width, 4, 4)
        self.timm_model.blocks = nn.Sequential(*[nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width))
                                                 for _ in range(blocks)])
        self.timm_model.norm = nn.LayerNorm(width)
        self.timm_model.head = nn.Linear(width, 14)


def test_timm_backbone_names_get_the_same_rule():
    model = TimmNamedViT()
    names = {id(p): n for n, p in model.named_parameters()}
    groups = layer_decay_groups(model, layer_decay=DECAY, weight_decay=0.05, learning_rate=PEAK)
    rate = {names[id(p)]: group["lr"] for group in groups for p in group["params"]}
    decay = {names[id(p)]: group["weight_decay"] for group in groups for p in group["params"]}
    assert rate["timm_model.head.weight"] == pytest.approx(PEAK)
    assert rate["timm_model.blocks.1.1.weight"] == pytest.approx(PEAK * 0.5)
    assert rate["timm_model.blocks.0.1.weight"] == pytest.approx(PEAK * 0.25)
    assert rate["timm_model.patch_embed.proj.weight"] == rate["timm_model.cls_token"] == pytest.approx(PEAK * 0.125)
    assert decay["timm_model.pos_embed"] == decay["timm_model.cls_token"] == 0.0
    assert decay["timm_model.blocks.0.1.weight"] == 0.05


def test_a_model_without_numbered_blocks_is_refused_by_name():
    with pytest.raises(ValueError, match="--layer_decay needs a transformer"):
        layer_decay_groups(nn.Sequential(nn.Linear(3, 3)), layer_decay=0.5, weight_decay=0.0, learning_rate=1.0)
    with pytest.raises(ValueError, match="in \\(0, 1\\]"):
        layer_decay_groups(tiny(), layer_decay=1.5, weight_decay=0.0, learning_rate=1.0)


def test_without_layer_decay_the_trainer_keeps_its_own_two_groups(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, learning_rate=PEAK, report_to="none")
    trainer = ChestXray14Trainer(model=tiny(), args=args)
    trainer.create_optimizer()
    assert len(trainer.optimizer.param_groups) == 2
    assert all(group["lr"] == PEAK for group in trainer.optimizer.param_groups)
