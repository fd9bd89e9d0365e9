"""The recipe's small parts on their own: arguments, loss, metrics, plots, checkpoint reloading."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score, roc_curve
from transformers import EvalPrediction, TrainingArguments

from nih_chestxray14.labels import LABELS
from training.arguments import DataTrainingArguments, ModelArguments, parse_arguments, recipe_defaults
from training.loss import MultiLabelBCELoss, balanced_pos_weight
from training.metrics import MultiLabelROCAUC, sigmoid
from training.plots import plot_roc_curves, plot_training_curves, roc_points

TINY_VIT = "hidden_size=16,num_hidden_layers=1,num_attention_heads=2,intermediate_size=32,image_size=16,patch_size=8"


# ---- arguments ---------------------------------------------------------------------------------------------------
def parse(*argv):
    return parse_arguments(list(argv), TrainingArguments)


def test_flags_parse_into_the_dataclasses_with_the_recipe_defaults(tmp_path):
    model_args, data_args, evaluation_args, training_args = parse(
        "--model_type", "vit", "--config_overrides", TINY_VIT, "--data_dir", str(tmp_path), "--output_dir", str(tmp_path)
    )
    assert model_args.attn_implementation == "sdpa"
    assert data_args.dataset_name == "nih_chestxray14" and data_args.augment and not data_args.horizontal_flip
    assert training_args.metric_for_best_model == "roc_auc" and training_args.greater_is_better
    assert training_args.load_best_model_at_end and training_args.remove_unused_columns is False
    assert not training_args.bf16  # no GPU here: precision stays fp32
    assert evaluation_args.threshold_rule == "youden" and evaluation_args.calibration == "none"


def test_a_json_file_sets_arguments_and_later_flags_override_it(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model_type": "vit", "data_dir": str(tmp_path), "output_dir": str(tmp_path),
                                "learning_rate": 0.01, "rotation_degrees": 3}))
    _, data_args, _, training_args = parse(str(path))
    assert training_args.learning_rate == 0.01 and data_args.rotation_degrees == 3
    _, _, _, training_args = parse(str(path), "--learning_rate", "0.5")
    assert training_args.learning_rate == 0.5


def test_gpu_defaults_turn_on_bf16_tf32_and_data_loader_workers():
    gpu = recipe_defaults(cuda_available=True, bf16_supported=True, cpus_per_process=16)
    assert gpu["bf16"] and gpu["tf32"] and gpu["optim"] == "adamw_torch_fused"
    assert gpu["dataloader_num_workers"] == 8 and gpu["dataloader_persistent_workers"] and gpu["dataloader_pin_memory"]
    assert recipe_defaults(cuda_available=True, bf16_supported=False, cpus_per_process=4)["fp16"]
    assert gpu["accelerator_config"] == {"non_blocking": True}  # batch copies overlap the step before
    cpu = recipe_defaults(cuda_available=False, bf16_supported=False, cpus_per_process=2)
    assert "bf16" not in cpu and "dataloader_num_workers" not in cpu and "accelerator_config" not in cpu
    assert gpu["logging_nan_inf_filter"] is False and cpu["logging_nan_inf_filter"] is False  # a NaN loss shows


def test_the_gpu_defaults_parse_into_training_arguments(tmp_path):
    from transformers import TrainingArguments

    gpu = recipe_defaults(cuda_available=True, bf16_supported=True, cpus_per_process=4)
    defaults = {key: gpu[key] for key in ("accelerator_config", "logging_nan_inf_filter", "dataloader_num_workers")}
    _, _, _, training_args = parse_arguments(
        ["--model_type", "vit", "--data_dir", str(tmp_path), "--output_dir", str(tmp_path)], TrainingArguments,
        defaults=defaults)
    assert training_args.accelerator_config.non_blocking and not training_args.logging_nan_inf_filter


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--data_dir", "x"], "--model_name_or_path"),
        (["--model_type", "vit", "--config_overrides", "hidden_size"], "not key=value"),
        (["--model_type", "not-a-model", "--data_dir", "x"], "--model_type 'not-a-model'"),
        (["--model_name_or_path", "google/vit-base-patch16-224-in21k", "--config_overrides", "hidden_size=8"],
         "only applies with --model_type"),
        (["--model_type", "vit"], "--data_dir"),
        (["--model_type", "vit", "--dataset_name", "me/chestxray14", "--make_sample_release"], "--make_sample_release"),
        (["--model_type", "vit", "--data_dir", "x", "--crop_scale_min", "0.9", "--crop_scale_max", "0.5"], "crop_scale"),
        (["--model_type", "vit", "--data_dir", "x", "--validation_fraction", "1.5"], "--validation_fraction"),
        (["--model_type", "vit", "--data_dir", "x", "--sample_bbox_fraction", "0"], "--sample_bbox_fraction"),
    ],
)
def test_bad_arguments_raise_a_value_error_naming_them(argv, message):
    with pytest.raises(ValueError, match=message):
        parse(*argv)


TRAIN = ["--model_type", "vit", "--data_dir", "x", "--do_train"]


@pytest.mark.parametrize(
    "argv, message",
    [
        # Each of these used to fail late with an error from torch or the Trainer naming no option, or to run silently.
        (["--learning_rate", "-0.001"], "--learning_rate must be >= 0, got -0.001"),
        (["--learning_rate", "nan"], "--learning_rate must be a finite number"),
        (["--per_device_train_batch_size", "2.5"], "--per_device_train_batch_size.*invalid int value: '2.5'"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size must be >= 1"),
        (["--per_device_eval_batch_size", "-4"], "--per_device_eval_batch_size must be >= 1"),
        (["--gradient_accumulation_steps", "0"], "--gradient_accumulation_steps must be >= 1"),
        (["--num_train_epochs", "-1"], "--num_train_epochs must be >= 0"),
        (["--num_train_epochs", "0"], "--num_train_epochs is 0.0, so --do_train would train nothing"),
        (["--max_steps", "-5"], "--max_steps must be > 0, or -1"),
        (["--weight_decay", "-0.1"], "--weight_decay must be >= 0"),
        (["--adam_beta1", "1.5"], "--adam_beta1 must be in"),
        (["--adam_epsilon", "-1"], "--adam_epsilon must be >= 0"),
        (["--max_grad_norm", "-1"], "--max_grad_norm must be >= 0"),
        (["--logging_steps", "-1"], "--logging_steps must be > 0"),
        (["--seed", "-1"], "--seed must be in"),
        (["--dataloader_num_workers", "-1"], "--dataloader_num_workers must be >= 0"),
        (["--max_pos_weight", "nan"], "--max_pos_weight must be a finite number"),
        (["--rotation_degrees", "inf"], "--rotation_degrees"),
        (["--preprocessing_num_workers", "0"], "--preprocessing_num_workers must be >= 1"),
    ],
)
def test_bad_numbers_raise_a_value_error_naming_the_option(argv, message):
    with pytest.raises(ValueError, match=message):
        parse(*TRAIN, *argv)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("per_device_train_batch_size", 2.5, "per_device_train_batch_size must be a whole number, got 2.5"),
        ("learning_rate", "fast", "learning_rate must be a number, got 'fast'"),
        ("augment", "yes", "augment must be true or false"),
        ("gradient_accumulation_steps", 0, "--gradient_accumulation_steps must be >= 1"),
    ],
)
def test_bad_numbers_in_a_json_file_are_named(tmp_path, key, value, message):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model_type": "vit", "data_dir": "x", "do_train": True, key: value}))
    with pytest.raises(ValueError, match=message):
        parse(str(path))


def test_a_whole_float_in_a_json_file_is_a_valid_count(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model_type": "vit", "data_dir": "x", "per_device_train_batch_size": 16.0}))
    _, _, _, training_args = parse(str(path))
    batch_size = training_args.per_device_train_batch_size
    assert batch_size == 16 and isinstance(batch_size, int)


def test_an_unknown_key_in_a_json_file_is_named(tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model_type": "vit", "data_dir": "x", "learning_rat": 0.1}))
    with pytest.raises(ValueError, match="learning_rat"):
        parse(str(path))


def test_argument_dataclasses_document_every_field():
    import dataclasses

    for dtype in (ModelArguments, DataTrainingArguments):
        for field in dataclasses.fields(dtype):
            assert field.metadata.get("help"), f"{dtype.__name__}.{field.name} has no help"


def test_help_describes_the_recipe_arguments(capsys):
    with pytest.raises(SystemExit) as exit_:
        parse("--help")
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--model_type", "--make_sample_release", "--overwrite_output_dir", "--class_weighting", "--eval_strategy"):
        assert flag in text


# ---- loss ----------------------------------------------------------------------------------------------------------
def test_balanced_pos_weight_is_negatives_over_positives_capped():
    labels = np.zeros((100, 3), dtype=np.int8)
    labels[:20, 0] = 1  # 20 positives: 80/20 = 4
    labels[:1, 1] = 1  # 1 positive: 99, capped at 50
    weights = balanced_pos_weight(labels, max_weight=50)  # column 2: no positive, weight 1
    np.testing.assert_allclose(weights.numpy(), [4.0, 50.0, 1.0])


def test_loss_is_mean_bce_and_divides_by_the_accumulated_item_count():
    logits = torch.randn(4, 14)
    labels = (torch.rand(4, 14) > 0.7).float()
    outputs = {"logits": logits}
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    torch.testing.assert_close(MultiLabelBCELoss()(outputs, labels), expected)
    # Under gradient accumulation over 2 such batches, each batch's sum is divided by the 112 entries of both.
    torch.testing.assert_close(MultiLabelBCELoss()(outputs, labels, num_items_in_batch=torch.tensor(112)), expected / 2)


def test_pos_weight_raises_the_cost_of_missed_positives():
    logits = torch.full((2, 14), -2.0)
    labels = torch.ones(2, 14)
    weighted = MultiLabelBCELoss(torch.full((14,), 3.0))({"logits": logits}, labels)
    torch.testing.assert_close(weighted, 3 * MultiLabelBCELoss()({"logits": logits}, labels))


# ---- metrics -------------------------------------------------------------------------------------------------------
def test_compute_metrics_scores_sigmoid_outputs_per_finding_like_scikit_learn():
    rng = np.random.default_rng(0)
    labels = (rng.random((60, 14)) < 0.3).astype(np.float32)
    logits = rng.normal(size=(60, 14)) + 1.5 * labels
    metrics = MultiLabelROCAUC(LABELS)(EvalPrediction(predictions=logits, label_ids=labels))
    per_class = [roc_auc_score(labels[:, c], logits[:, c]) for c in range(14)]
    assert metrics["roc_auc"] == pytest.approx(np.mean(per_class))
    for name, auc in zip(LABELS, per_class):
        assert metrics[f"roc_auc_{name}"] == pytest.approx(auc)
    assert "roc_auc_ci_low" not in metrics


def test_compute_metrics_adds_95_percent_intervals_when_asked():
    rng = np.random.default_rng(1)
    labels = (rng.random((80, 14)) < 0.3).astype(np.float32)
    logits = rng.normal(size=(80, 14)) + labels
    metrics = MultiLabelROCAUC(LABELS, confidence_level=0.95)(EvalPrediction(predictions=logits, label_ids=labels))
    assert metrics["roc_auc_ci_low"] < metrics["roc_auc"] < metrics["roc_auc_ci_high"]
    assert metrics["roc_auc_Hernia_ci_low"] < metrics["roc_auc_Hernia"] < metrics["roc_auc_Hernia_ci_high"]
    json.dumps(metrics)  # plain floats


def test_sigmoid_is_stable_for_large_logits():
    np.testing.assert_allclose(sigmoid(np.array([-1000.0, 0.0, 1000.0])), [0.0, 0.5, 1.0])


# ---- plots ---------------------------------------------------------------------------------------------------------
def test_roc_points_match_scikit_learn():
    rng = np.random.default_rng(2)
    labels = rng.random(200) < 0.3
    scores = np.round(rng.normal(size=200) + labels, 1)  # rounded: many ties
    fpr, tpr = roc_points(labels, scores)
    expected_fpr, expected_tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, expected_fpr)
    np.testing.assert_allclose(tpr, expected_tpr)


def test_plots_are_written_as_png_files(tmp_path):
    history = [{"step": s, "loss": 1 / s, "learning_rate": 1e-3 * (1 - s / 40)} for s in range(1, 40, 5)]
    history += [{"step": 20, "eval_loss": 0.5, "eval_roc_auc": 0.7}, {"step": 40, "eval_loss": 0.4, "eval_roc_auc": 0.8}]
    plots = plot_training_curves(history, tmp_path)
    rng = np.random.default_rng(3)
    labels = (rng.random((50, 14)) < 0.3).astype(int)
    labels[:, -1] = 0  # a finding with no positive: drawn as n/a, not an error
    plots.update(plot_roc_curves(labels, rng.random((50, 14)), LABELS, tmp_path, {"roc_auc": 0.5}))
    assert set(plots.values()) == {"training_loss.png", "learning_rate.png", "roc_curves_test.png"}
    for name in plots.values():
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG" and image.size[0] > 300


# ---- checkpoints ---------------------------------------------------------------------------------------------------
def train_then_resume(trainer_class, output_dir):
    """Train a tiny ViT 2 steps (checkpoint-2), then resume a freshly initialised one from that checkpoint.

    Returns the trained weights and the weights the resumed model ends with (resuming at max_steps trains nothing).
    """
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=16,
                       patch_size=8, num_labels=14, problem_type="multi_label_classification")
    generator = torch.Generator().manual_seed(0)
    examples = [{"pixel_values": torch.randn(3, 16, 16, generator=generator),
                 "labels": (torch.rand(14, generator=generator) < 0.3).float()} for _ in range(4)]
    args = TrainingArguments(output_dir=str(output_dir), report_to="none", use_cpu=True, max_steps=2,
                             per_device_train_batch_size=2, save_strategy="steps", save_steps=2, learning_rate=0.1)
    torch.manual_seed(0)
    trained = ViTForImageClassification(config)
    trainer_class(model=trained, args=args, train_dataset=examples).train()
    torch.manual_seed(1)
    resumed = ViTForImageClassification(config)
    trainer_class(model=resumed, args=args, train_dataset=examples).train(
        resume_from_checkpoint=str(output_dir / "checkpoint-2"))
    return trained.state_dict(), resumed.state_dict()


def test_resuming_restores_the_weights_of_the_checkpoint(tmp_path):
    """Resuming and load_best_model_at_end reload checkpoints with the Trainer's own loader: all weights come back."""
    from training.trainer import ChestXray14Trainer

    trained, resumed = train_then_resume(ChestXray14Trainer, tmp_path)
    for name, value in trained.items():
        torch.testing.assert_close(resumed[name], value, msg=f"{name} was not restored")


def test_transformers_trainer_still_loses_the_weights_of_its_checkpoints(tmp_path):
    """Guard: the reason ChestXray14Trainer.save_model exists. When this fails, transformers reloads its own
    checkpoints again, and the override (training/trainer.py) can go."""
    from transformers import Trainer

    trained, resumed = train_then_resume(Trainer, tmp_path)
    lost = [name for name, value in trained.items() if not torch.equal(resumed[name], value)]
    assert lost, ("transformers' Trainer now restores every weight of its checkpoints: remove "
                  "ChestXray14Trainer.save_model and this test")


def test_the_published_model_keeps_the_default_weight_names(tmp_path):
    """Only checkpoints change format: output_dir gets what save_pretrained writes by default."""
    from safetensors import safe_open
    from transformers import ViTConfig, ViTForImageClassification

    from training.trainer import ChestXray14Trainer

    config = ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=16,
                       patch_size=8, num_labels=14)
    model = ViTForImageClassification(config)
    trainer = ChestXray14Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to="none",
                                                                      use_cpu=True))
    trainer.save_model()
    model.save_pretrained(tmp_path / "plain")
    with safe_open(tmp_path / "model.safetensors", "pt") as published, \
            safe_open(tmp_path / "plain" / "model.safetensors", "pt") as plain:
        assert set(published.keys()) == set(plain.keys())
    reloaded = ViTForImageClassification.from_pretrained(tmp_path, use_safetensors=True)
    for name, value in reloaded.state_dict().items():
        torch.testing.assert_close(value, model.state_dict()[name])
