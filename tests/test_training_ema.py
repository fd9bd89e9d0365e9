"""The weights' moving average: it differs from the trained weights, is evaluated beside them, and is what a checkpoint
(and so the published model) holds when it scores better; a resumed run continues both."""


import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainingArguments

from training.arguments import ModelArguments
from training.ema import EMA_WEIGHTS, TRAINING_WEIGHTS, WeightAverage, is_better
from training.model import build_config, build_model
from training.trainer import ChestXray14Trainer

TINY_VIT = "hidden_size=16,num_hidden_layers=1,num_attention_heads=2,intermediate_size=32,image_size=16,patch_size=8"


class Images(torch.utils.data.Dataset):
    def __init__(self, count, seed):
        generator = torch.Generator().manual_seed(seed)
        self.pixels = torch.randn(count, 3, 16, 16, generator=generator)
        self.labels = (torch.rand(count, 14, generator=generator) < 0.3).float()

    def __len__(self):
        return len(self.pixels)

    def __getitem__(self, index):
        return {"pixel_values": self.pixels[index], "labels": self.labels[index]}


def tiny_vit():
    model_args = ModelArguments(model_type="vit", config_overrides=TINY_VIT)
    torch.manual_seed(0)
    return build_model(model_args, build_config(model_args))


class DistanceFromStart:
    """A metric that prefers predictions close to (``sign=-1``) or far from (``sign=+1``) the untrained model's: the
    average, which trails the trained weights, is then surely the better or the worse one."""

    def __init__(self, reference_logits, sign):
        self.reference, self.sign = reference_logits, sign

    def __call__(self, prediction):
        distance = float(np.abs(prediction.predictions - self.reference).mean())
        return {"score": self.sign * distance}


def train(tmp_path, sign, max_steps=4, resume=None, output="out"):
    model = tiny_vit()
    evaluation = Images(16, seed=1)
    with torch.no_grad():
        reference = model.eval()(pixel_values=evaluation.pixels).logits.numpy()
    args = TrainingArguments(
        output_dir=str(tmp_path / output), use_cpu=True, report_to="none", learning_rate=0.05, seed=0,
        per_device_train_batch_size=8, max_steps=max_steps, eval_strategy="steps", eval_steps=2, save_strategy="steps",
        save_steps=2, logging_steps=1, load_best_model_at_end=True, metric_for_best_model="score",
        greater_is_better=True, save_total_limit=None, dataloader_num_workers=0, lr_scheduler_type="constant",
    )
    trainer = ChestXray14Trainer(model=model, args=args, train_dataset=Images(64, seed=2), eval_dataset=evaluation,
                                 compute_metrics=DistanceFromStart(reference, sign), ema_decay=0.5)
    trainer.train(resume_from_checkpoint=resume)
    return trainer


def checkpoint_weights(folder, name="model.safetensors"):
    return load_file(str(folder / name))


def differs(first, second):
    return any(not torch.equal(first[key], second[key]) for key in first)


def test_the_average_is_kept_as_the_checkpoint_model_when_it_scores_better(tmp_path):
    trainer = train(tmp_path, sign=-1)
    folder = tmp_path / "out" / "checkpoint-2"
    model, average, trained = (checkpoint_weights(folder), checkpoint_weights(folder, EMA_WEIGHTS),
                               checkpoint_weights(folder, TRAINING_WEIGHTS))
    assert set(model) == set(average) == set(trained)
    assert all(torch.equal(model[key], average[key]) for key in model)  # the saved model is the average
    assert differs(average, trained)  # which is not the trained weights
    history = trainer.state.log_history
    assert [entry["ema_chosen"] for entry in history if "ema_chosen" in entry] == [1.0, 1.0]
    evaluation = next(entry for entry in history if "eval_ema_score" in entry)
    trained_score = next(entry["eval_score"] for entry in history if "eval_score" in entry)
    assert evaluation["eval_ema_score"] > trained_score
    # load_best_model_at_end: the model now holds the best checkpoint's average
    best = checkpoint_weights(tmp_path / "out" / f"checkpoint-{trainer.state.best_global_step}", EMA_WEIGHTS)
    assert trainer.state.best_metric == pytest.approx(max(e["eval_ema_score"] for e in history if "eval_ema_score" in e))
    assert all(torch.equal(parameter.detach(), best[name]) for name, parameter in trainer.model.named_parameters())


def test_the_trained_weights_are_kept_when_they_score_better(tmp_path):
    train(tmp_path, sign=+1)
    folder = tmp_path / "out" / "checkpoint-2"
    assert not (folder / TRAINING_WEIGHTS).exists()
    assert differs(checkpoint_weights(folder), checkpoint_weights(folder, EMA_WEIGHTS))


def test_a_resumed_run_continues_the_trained_weights_and_the_average_exactly(tmp_path):
    whole = train(tmp_path, sign=-1, output="whole")
    train(tmp_path, sign=-1, max_steps=2, output="resumed")
    resumed = train(tmp_path, sign=-1, output="resumed", resume=str(tmp_path / "resumed" / "checkpoint-2"))
    for name in (TRAINING_WEIGHTS, EMA_WEIGHTS):
        first = checkpoint_weights(tmp_path / "whole" / "checkpoint-4", name)
        second = checkpoint_weights(tmp_path / "resumed" / "checkpoint-4", name)
        assert not differs(first, second), name
    assert whole.state.best_metric == resumed.state.best_metric


def test_weight_average_moves_by_one_minus_decay_and_swaps_back():
    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    average = WeightAverage(model, decay=0.75)
    with torch.no_grad():
        model.weight.fill_(4.0)
    average.update(model)
    assert torch.equal(average.average["weight"], torch.full((1, 2), 1.0))
    with average.applied_to(model):
        assert torch.equal(model.weight, torch.full((1, 2), 1.0))
    assert torch.equal(model.weight, torch.full((1, 2), 4.0))
    with pytest.raises(ValueError, match="--ema_decay"):
        WeightAverage(model, decay=1.0)


def test_is_better_follows_the_direction_and_never_prefers_nan():
    assert is_better(0.8, 0.7, True) and not is_better(0.8, 0.7, False)
    assert not is_better(float("nan"), 0.1, True) and is_better(0.1, float("nan"), True)


def test_ema_decay_out_of_range_is_named():
    with pytest.raises(ValueError, match="--ema_decay must be in"):
        ModelArguments(model_type="vit", ema_decay=1.5)
