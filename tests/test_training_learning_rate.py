"""The learning-rate scaling rule at world size 1, read from the optimizer the recipe's Trainer builds.

World size 2 runs under torchrun in ``tests/test_run_torchrun.py``, which reads the rate the Trainer logged from the
same optimizer: both follow ``base × per-device batch × accumulation × processes / 256``.
"""

import pytest
from transformers import TrainingArguments

from training.arguments import ModelArguments, parse_arguments
from training.learning_rate import apply_base_learning_rate, global_batch_size, scaled_learning_rate
from training.model import build_config, build_model
from training.trainer import ChestXray14Trainer

TINY_VIT = "hidden_size=16,num_hidden_layers=2,num_attention_heads=2,intermediate_size=32,image_size=16,patch_size=8"


def parse(tmp_path, *extra):
    return parse_arguments(["--model_type", "vit", "--config_overrides", TINY_VIT, "--data_dir", str(tmp_path),
                            "--output_dir", str(tmp_path / "out"), "--use_cpu", *extra], TrainingArguments)


@pytest.mark.parametrize("batch, accumulation, expected", [(8, 1, 2.5e-4 * 8 / 256), (8, 4, 2.5e-4 * 32 / 256)])
def test_the_optimizer_gets_the_base_rate_scaled_by_the_global_batch(tmp_path, batch, accumulation, expected):
    model_args, _, _, training_args = parse(
        tmp_path, "--base_learning_rate", "2.5e-4", "--per_device_train_batch_size", str(batch),
        "--gradient_accumulation_steps", str(accumulation), "--layer_decay", "0.5", "--eval_strategy", "no",
        "--save_strategy", "no", "--load_best_model_at_end", "false")
    assert training_args.world_size == 1
    assert apply_base_learning_rate(model_args.base_learning_rate, training_args) == pytest.approx(expected)
    trainer = ChestXray14Trainer(model=build_model(model_args, build_config(model_args)), args=training_args,
                                 layer_decay=model_args.layer_decay)
    trainer.create_optimizer()
    head = trainer.optimizer.param_groups[0]
    assert head["lr"] == pytest.approx(expected) and head["lr_scale"] == 1.0
    assert min(group["lr"] for group in trainer.optimizer.param_groups) == pytest.approx(expected * 0.5 ** 3)


def test_the_rule_is_linear_in_processes_and_accumulation():
    class Arguments:
        per_device_train_batch_size, gradient_accumulation_steps, world_size = 16, 2, 8

    assert global_batch_size(Arguments()) == 256
    assert scaled_learning_rate(2.5e-4, 1024) == pytest.approx(1e-3)  # the MAE recipes' 8 GPUs × 128 images


def test_without_a_base_rate_the_learning_rate_is_used_as_given(tmp_path):
    model_args, _, _, training_args = parse(tmp_path, "--learning_rate", "0.003", "--per_device_train_batch_size", "64")
    assert apply_base_learning_rate(model_args.base_learning_rate, training_args) is None
    assert training_args.learning_rate == 0.003


def test_a_base_rate_and_a_learning_rate_together_are_refused(tmp_path):
    with pytest.raises(ValueError, match="--base_learning_rate .* or --learning_rate"):
        parse(tmp_path, "--base_learning_rate", "1e-4", "--learning_rate", "1e-3")
    with pytest.raises(ValueError, match="--base_learning_rate must be > 0"):
        parse(tmp_path, "--base_learning_rate", "-1")
