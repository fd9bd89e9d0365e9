"""The recipe's IPU branch, ``training/run.py --ipu_config_name``, in optimum-graphcore 0.7.1's environment.

The recipe's own ``main()`` runs here on the Parquet export that the main environment wrote (``make test-ipu``), with
a ViT of ViT-Base's layout (12 encoder layers) and a tiny width, and stops where poptorch would start compiling for the
IPU: the stand-in for the SDK raises "no IPU here" there. The tests check what the run built on the way (arguments,
data, IPUConfig, pipelined model, trainer, collators, metric), what it refuses before any work, and, with the three
calls that run on the device replaced by fixed results, what it publishes.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import poptorch
import pytest
import torch
import transformers
from optimum.graphcore import IPUConfig, IPUTrainer, IPUTrainingArguments
from safetensors import safe_open
from transformers.trainer_utils import PredictionOutput, SchedulerType, TrainOutput

from training import run
from training.arguments import parse_arguments, precision
from training.data import AugmentingCollator
from training.ipu import DEFAULT_IPU_CONFIG, check_device_steps, ipu_defaults, trainer_classes, write_ipu_config
from training.metrics import MultiLabelROCAUC

IPU_CONFIG = str(DEFAULT_IPU_CONFIG)
TINY_VIT = "hidden_size=32,num_hidden_layers=12,num_attention_heads=4,intermediate_size=64,image_size=32,patch_size=8"
NUM_LABELS = 14
SMALL_STEPS = "gradient_accumulation_steps=4,inference_device_iterations=3"
"""4 micro-batches per weight update, 3 images per inference step: 3 divides the export's validation (9) and test
(24) splits."""


def recipe_argv(export: Path, tmp_path: Path, *extra: str) -> list:
    return ["--ipu_config_name", IPU_CONFIG, "--model_type", "vit", "--config_overrides", TINY_VIT,
            "--dataset_name", str(export), "--dataset_config_name", "resized-224",
            "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "out"), *extra]


@pytest.fixture
def recipe_trainers(monkeypatch):
    """Every ``ChestXray14IPUTrainer`` the recipe builds during the test, in order."""
    trainer_class = trainer_classes(IPU_CONFIG)[0]
    built = []
    original = trainer_class.__init__

    def recording_init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(trainer_class, "__init__", recording_init)
    return built


def split_sizes(expected) -> dict:
    return {split: len(rows["image_id"]) for split, rows in expected.items()}


# ---- arguments ---------------------------------------------------------------------------------------------------
def test_the_ipu_defaults_are_the_tutorials_settings(tmp_path):
    argv = ["--ipu_config_name", IPU_CONFIG, "--model_type", "vit", "--dataset_name", str(tmp_path),
            "--output_dir", str(tmp_path / "out"), "--do_train"]
    model_args, _, _, args = parse_arguments(argv, IPUTrainingArguments, ipu_defaults(cpus=32))
    assert model_args.ipu_config_name == args.ipu_config_name == IPU_CONFIG
    assert model_args.overwrite_output_dir is False
    assert (args.learning_rate, args.lr_scheduler_type, args.warmup_ratio) == (2e-4, SchedulerType.COSINE, 0.25)
    assert args.dataloader_mode == poptorch.DataLoaderMode.Sync
    assert args.n_ipu is None  # the pod size comes from the IPUConfig: one 4-IPU pipeline
    assert args.ipu_config_overrides is None  # gradient accumulation too (128)
    assert args.per_device_train_batch_size == args.per_device_eval_batch_size == 1
    assert args.dataloader_num_workers == 8
    assert args.evaluation_strategy == args.save_strategy == "epoch"  # the recipe's eval_strategy, respelled for 4.29
    assert args.load_best_model_at_end and args.metric_for_best_model == "roc_auc"
    assert args.remove_unused_columns is False
    assert precision(args) == "fp16"
    assert ipu_defaults(cpus=2)["dataloader_num_workers"] == 1


def test_flags_and_json_keys_shared_with_ipu_training_arguments_parse_once(tmp_path):
    arguments = tmp_path / "run.json"
    arguments.write_text(json.dumps({
        "ipu_config_name": IPU_CONFIG, "model_type": "vit", "dataset_name": str(tmp_path),
        "output_dir": str(tmp_path / "out"), "eval_strategy": "steps", "eval_steps": 5, "save_strategy": "steps",
        "save_steps": 10, "learning_rate": 1e-4,
    }))
    argv = [str(arguments), "--overwrite_output_dir", "--fp32", "--n_ipu", "16", "--eval_strategy=steps"]
    model_args, _, _, args = parse_arguments(argv, IPUTrainingArguments, ipu_defaults())
    assert model_args.overwrite_output_dir is True and args.overwrite_output_dir is True
    assert model_args.ipu_config_name == IPU_CONFIG
    assert (args.evaluation_strategy, args.eval_steps, args.save_steps) == ("steps", 5, 10)
    assert args.learning_rate == 1e-4 and args.n_ipu == 16
    assert precision(args) == "fp32"


# ---- the run, up to the device -----------------------------------------------------------------------------------
def test_the_recipe_runs_to_the_device_boundary(exported, tmp_path, recipe_trainers):
    folder, expected = exported
    with pytest.raises(poptorch.NoIPUError, match=r"no IPU here: poptorch\.trainingModel\(PipelinedViT"):
        run.main(recipe_argv(folder, tmp_path, "--ipu_config_overrides", SMALL_STEPS, "--do_train", "--do_eval",
                             "--do_predict", "--per_device_train_batch_size", "2"))
    [trainer] = recipe_trainers
    assert isinstance(trainer, IPUTrainer) and type(trainer).__name__ == "ChestXray14IPUTrainer"

    # The IPUConfig: the named one with --ipu_config_overrides, and it round-trips through the published file.
    ipu_config = trainer.ipu_config
    assert (ipu_config.gradient_accumulation_steps, ipu_config.inference_device_iterations) == (4, 3)
    assert ipu_config.layers_per_ipu == [3, 3, 3, 3] and ipu_config.replicated_tensor_sharding is True
    written = write_ipu_config(tmp_path / "published", IPU_CONFIG, ipu_config)
    assert IPUConfig.from_pretrained(str(written.parent)).to_dict() == ipu_config.to_dict()
    assert json.loads(written.read_text())["gradient_accumulation_steps"] == 4  # not the input file's 128

    # optimum-graphcore's pipelined ViT: three encoder layers per IPU, halved to fp16.
    model = trainer.model
    assert type(model).__name__ == "PipelinedViTForImageClassification"
    stages = [poptorch.block_of(layer).ipu_id for layer in model.vit.encoder.layer]
    assert stages == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert poptorch.block_of(model.vit.embeddings) == poptorch.Block("Embedding", 0)
    assert poptorch.block_of(model.classifier) == poptorch.Block("Classifier", 3)
    assert model.config.problem_type == "multi_label_classification" and model.config.num_labels == NUM_LABELS
    assert next(model.parameters()).dtype == torch.float16

    # Our collators (augment on the host for training, normalise only for evaluation) and our metric.
    assert isinstance(trainer.data_collator, AugmentingCollator) and trainer.data_collator.training
    assert isinstance(trainer.eval_data_collator, AugmentingCollator) and not trainer.eval_data_collator.training
    assert trainer.eval_data_collator.augment_and_normalise is trainer.data_collator.augment_and_normalise
    assert isinstance(trainer.compute_metrics, MultiLabelROCAUC)

    # One device step of data: 2 images x 4 micro-batches for training, 1 x 3 for inference, as the model takes them.
    train_batch = next(iter(trainer.get_train_dataloader()))
    assert train_batch["pixel_values"].shape == (8, 3, 32, 32) and train_batch["labels"].shape == (8, NUM_LABELS)
    assert train_batch["pixel_values"].dtype == torch.float32 and train_batch["pixel_values"].abs().max() <= 1.0
    eval_loader = trainer.get_eval_dataloader()
    assert len(eval_loader) * 3 == split_sizes(expected)["validation"]  # every validation image, none twice

    # Reached with the tutorial's optimizer settings; nothing was published.
    assert isinstance(trainer.optimizer, poptorch.optim.AdamW) and trainer.optimizer.param_groups[0]["lr"] == 2e-4
    assert not (tmp_path / "out" / "model.safetensors").exists() and not (tmp_path / "out" / "README.md").exists()


def test_evaluation_alone_stops_where_poptorch_would_compile_for_inference(exported, tmp_path, recipe_trainers):
    folder, _ = exported
    with pytest.raises(poptorch.NoIPUError, match=r"no IPU here: poptorch\.inferenceModel"):
        run.main(recipe_argv(folder, tmp_path, "--ipu_config_overrides", SMALL_STEPS, "--do_eval"))
    assert recipe_trainers[0].train_dataset is None


def test_a_training_split_smaller_than_one_training_step_is_refused(exported, tmp_path):
    folder, expected = exported
    train = split_sizes(expected)["train"]
    assert train < 128
    with pytest.raises(ValueError, match=rf"training split has {train} images, fewer than one training step .*"
                                         r"gradient_accumulation_steps 128 .* = 128"):
        run.main(recipe_argv(folder, tmp_path, "--do_train"))


def test_a_scored_split_that_inference_steps_do_not_divide_is_refused(exported, tmp_path):
    folder, expected = exported
    validation = split_sizes(expected)["validation"]
    assert validation % 4
    with pytest.raises(ValueError, match=rf"validation split has {validation} images, not a whole number of inference "
                                         r"steps.* = 4 images per step.*inference_device_iterations=3"):
        run.main(recipe_argv(folder, tmp_path, "--do_eval", "--do_predict"))


def test_nih_split_sizes_get_a_step_size_that_divides_both(tmp_path):
    # NIH's validation (8,569 = 11 x 19 x 41, at the default validation_fraction) and test (25,596) splits share no
    # factor, so one image per inference step is the only size that scores both without dropping or repeating one.
    ipu_config = IPUConfig.from_pretrained(IPU_CONFIG)
    trainer = SimpleNamespace(ipu_config=ipu_config,
                              args=IPUTrainingArguments(output_dir=str(tmp_path), per_device_eval_batch_size=2))
    with pytest.raises(ValueError, match=r"validation split has 8,569 images.* 2 x inference_device_iterations 4 x "
                                         r"inference_replication_factor 1 = 8 images per step, which leaves 1 over.*"
                                         r"--per_device_eval_batch_size 1 with inference_device_iterations=1"):
        check_device_steps(trainer, {"train": 77_955, "validation": 8_569, "test": 25_596})
    check_device_steps(trainer, {"train": 77_955, "validation": 8_000, "test": 25_592})  # both multiples of 8


def test_the_trainer_checks_any_split_it_is_asked_to_score(exported, tmp_path, recipe_trainers):
    folder, _ = exported
    with pytest.raises(poptorch.NoIPUError):
        run.main(recipe_argv(folder, tmp_path, "--ipu_config_overrides", SMALL_STEPS, "--do_eval"))
    trainer = recipe_trainers[0]
    with pytest.raises(ValueError, match="the validation split has 10 images"):
        trainer.get_eval_dataloader(list(range(10)))
    with pytest.raises(ValueError, match="the test split has 4 images"):
        trainer.get_test_dataloader(list(range(4)))


# ---- past the device: what the run publishes ---------------------------------------------------------------------
@pytest.fixture
def device_results(monkeypatch):
    """Replace the three calls that run on the IPUs (train, evaluate, predict) with fixed results: logits that lean
    towards the true labels, scored by the trainer's own metric. Everything else in ``main()`` runs for real."""
    trainer_class = trainer_classes(IPU_CONFIG)[0]

    def scored(trainer, dataset, prefix):
        labels = np.array([example["labels"] for example in dataset], dtype=np.float32)
        logits = np.random.default_rng(0).normal(size=labels.shape) + 2 * labels
        prediction = transformers.EvalPrediction(predictions=logits, label_ids=labels)
        metrics = {f"{prefix}_{key}": value for key, value in trainer.compute_metrics(prediction).items()}
        return logits, labels, {f"{prefix}_loss": 0.5, **metrics}

    def train(self, resume_from_checkpoint=None, **kwargs):
        self.state.global_step = 3
        self.state.log_history = [{"loss": 0.69, "learning_rate": 2e-4, "epoch": 1.0, "step": 3}]
        return TrainOutput(3, 0.69, {"train_runtime": 1.0, "train_samples_per_second": 24.0, "train_loss": 0.69})

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix="eval"):
        return scored(self, eval_dataset if eval_dataset is not None else self.eval_dataset, metric_key_prefix)[2]

    def predict(self, test_dataset, ignore_keys=None, metric_key_prefix="test"):
        return PredictionOutput(*scored(self, test_dataset, metric_key_prefix))

    for name, replacement in (("train", train), ("evaluate", evaluate), ("predict", predict)):
        monkeypatch.setattr(trainer_class, name, replacement)


def test_after_the_device_the_recipe_publishes_the_ipu_run(exported, tmp_path, device_results, hub):
    folder, _ = exported
    results = run.main(recipe_argv(folder, tmp_path, "--ipu_config_overrides", SMALL_STEPS, "--do_train",
                                   "--do_eval", "--do_predict", "--per_device_train_batch_size", "2",
                                   "--push_to_hub", "--hub_model_id", "test-user/vit-ipu"))
    out = tmp_path / "out"
    assert results["test_roc_auc"] > 0.5

    # The weights: float32 safetensors that transformers loads, no pickle; config.json says float32.
    assert not (out / "pytorch_model.bin").exists()
    with safe_open(str(out / "model.safetensors"), "pt") as weights:
        assert {weights.get_tensor(name).dtype for name in weights.keys()} == {torch.float32}
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "float32"
    model = transformers.ViTForImageClassification.from_pretrained(str(out), use_safetensors=True)
    assert model.config.num_labels == NUM_LABELS and model.dtype == torch.float32

    # ipu_config.json: the IPUConfig the run used (with the overrides), which loads back as it was.
    published = IPUConfig.from_pretrained(str(out))
    assert (published.gradient_accumulation_steps, published.inference_device_iterations) == (4, 3)

    # The card says what ran on the IPUs: the optimizer IPUTrainer builds, a weight update's batch, the precision.
    card = (out / "README.md").read_text()
    assert "Graphcore IPUs" in card and "poptorch AdamW" in card and "without bias correction" in card
    assert "| total_train_batch_size | 8 |" in card and "| warmup_ratio | 0.25 |" in card
    assert "| lr_scheduler | cosine |" in card and "fp16 (the whole model" in card

    # The upload: the published folder, without the pickled arguments, and no token anywhere but the header.
    uploaded = set(hub.files("test-user/vit-ipu"))
    assert {"model.safetensors", "config.json", "ipu_config.json", "README.md", "all_results.json"} <= uploaded
    assert "training_args.bin" not in uploaded and "pytorch_model.bin" not in uploaded
    assert hub.token_leaks() == []


def test_checkpoints_keep_ipu_trainers_format_for_its_resume(exported, tmp_path, recipe_trainers):
    folder, _ = exported
    with pytest.raises(poptorch.NoIPUError):
        run.main(recipe_argv(folder, tmp_path, "--ipu_config_overrides", SMALL_STEPS, "--do_eval"))
    trainer = recipe_trainers[0]
    checkpoint = tmp_path / "out" / "checkpoint-3"
    trainer.save_model(str(checkpoint), _internal_call=True)
    # IPUTrainer resumes and loads the best model from pytorch_model.bin only (optimum-graphcore 0.7.1).
    assert (checkpoint / "pytorch_model.bin").is_file() and not (checkpoint / "model.safetensors").exists()
