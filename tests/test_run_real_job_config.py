"""The real-job config (training/configs/vit-base-nih.json): it parses into the published recipe's settings, and two
steps of it run with a random-weight stand-in of google/vit-base-patch16-224-in21k (ViT-B/16, 224 px), on CPU."""

import json
from pathlib import Path

import pytest
import torch
from transformers import TrainingArguments, ViTConfig, ViTModel
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

from training.arguments import parse_arguments
from training.run import main

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).resolve().parents[1] / "training" / "configs" / "vit-base-nih.json"


def test_the_config_parses_into_the_published_recipes_settings(tmp_path):
    model_args, data_args, _, training_args = parse_arguments(
        [str(CONFIG), "--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "out")], TrainingArguments)
    assert model_args.model_name_or_path == "google/vit-base-patch16-224-in21k"
    assert data_args.dataset_config_name == "resized-256" and data_args.crop_scale_min == 0.08
    assert (model_args.base_learning_rate, model_args.layer_decay, model_args.drop_path_rate) == (2.5e-4, 0.55, 0.2)
    assert training_args.weight_decay == 0.05 and training_args.num_train_epochs == 75
    assert training_args.warmup_steps == pytest.approx(5 / 75, abs=1e-4)
    assert training_args.lr_scheduler_kwargs == {"min_lr_rate": 0.01}  # 1e-5 at the recipe's peak of 1e-3
    assert training_args.max_grad_norm == 0.0 and training_args.optim == "adamw_torch_fused"
    assert training_args.per_device_train_batch_size == 128
    assert set(json.loads(CONFIG.read_text())) - {"output_dir"} <= {
        *vars(model_args), *vars(data_args), *vars(training_args)}


def write_in21k_stand_in(folder):
    """google/vit-base-patch16-224-in21k's layout, random weights: a ViTModel (with pooler, no head) at ViT-B/16 size
    and its image processor (224 px, mean = std = 0.5)."""
    torch.manual_seed(0)
    ViTModel(ViTConfig(), add_pooling_layer=True).save_pretrained(folder)
    ViTImageProcessorPil(size={"height": 224, "width": 224}).save_pretrained(folder)
    return folder


def test_two_steps_of_the_config_run_with_a_vit_base_stand_in(tmp_path):
    stand_in = write_in21k_stand_in(tmp_path / "vit-base-patch16-224-in21k")
    output_dir = tmp_path / "out"
    results = main([
        str(CONFIG), "--model_name_or_path", str(stand_in), "--data_dir", str(tmp_path / "release"),
        "--make_sample_release", "--sample_num_patients", "8", "--sample_image_size", "64",
        "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(output_dir), "--use_cpu",
        "--max_steps", "2", "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "4",
        "--max_eval_samples", "4", "--do_predict", "false", "--logging_steps", "1",
    ])
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    rates = [entry["learning_rate"] for entry in state["log_history"] if "learning_rate" in entry]
    assert rates and max(rates) <= 2.5e-4 * 2 / 256  # the scaled peak at a global batch of 2, during warmup
    assert "eval_roc_auc" in results
    card = (output_dir / "README.md").read_text()
    assert "layer_decay" in card and "drop_path_rate" in card and "base_learning_rate" in card
    config = json.loads((output_dir / "config.json").read_text())
    assert config["model_type"] == "vit" and len(config["id2label"]) == 14
