"""Exponential moving average (EMA) of the weights, evaluated beside the trained weights and kept when it scores better.

With ``--ema_decay d``, after every optimizer step the average moves towards the weights just trained:
``average ← d · average + (1 − d) · weights`` (float32, on the weights' device; it starts from the weights the run
starts from). It averages over about ``1 / (1 − d)`` steps, so pick ``d`` with that well below the run's length (0.999
for a few thousand steps).

At each evaluation during training, :class:`EMAMixin` scores both: the trained weights as usual (``eval_*`` in the
log), then the average (``eval_ema_*``). Whichever is better by ``--metric_for_best_model`` is what the checkpoint
written after that evaluation holds as its model, and what the returned ``eval_*`` metrics describe, so the Trainer's
best-checkpoint tracking and ``load_best_model_at_end`` (on in the recipe) pick among both, and the published model
is the better one. The log gets ``ema_chosen`` (1 or 0) for each evaluation. Training itself always continues from
the trained weights.

Besides the Trainer's files, each checkpoint holds ``ema.safetensors`` (the average) and, when the average was
chosen, ``training_weights.safetensors`` (the trained weights), so that a resumed run continues both exactly.
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
from pathlib import Path
from typing import Any, Dict, Iterator, Optional

import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

logger = logging.getLogger(__name__)

EMA_WEIGHTS = "ema.safetensors"
"""The average, in each checkpoint."""

TRAINING_WEIGHTS = "training_weights.safetensors"
"""The trained weights, in a checkpoint whose model is the average."""

_CHECKPOINT = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-\d+$")

__all__ = ["EMA_WEIGHTS", "TRAINING_WEIGHTS", "EMAMixin", "WeightAverage", "is_better"]


class WeightAverage:
    """The exponential moving average of a model's floating-point parameters.

    Args:
        model: the model whose parameters are averaged; the average starts from them.
        decay: ``d`` in (0, 1).
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"--ema_decay must be in (0, 1), got {decay}")
        self.decay = decay
        with torch.no_grad():
            self.average: Dict[str, torch.Tensor] = {
                name: parameter.detach().float().clone()
                for name, parameter in model.named_parameters() if parameter.is_floating_point()
            }

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards ``model``'s current parameters by ``1 - decay``."""
        for name, parameter in model.named_parameters():
            if name in self.average:
                self.average[name].lerp_(parameter.detach().float(), 1.0 - self.decay)

    @contextlib.contextmanager
    def applied_to(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """Put the average into ``model``'s parameters for the ``with`` block, then the trained weights back."""
        saved = {}
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if name in self.average:
                    saved[name] = parameter.detach().clone()
                    parameter.copy_(self.average[name])
        try:
            yield model
        finally:
            with torch.no_grad():
                for name, parameter in model.named_parameters():
                    if name in saved:
                        parameter.copy_(saved[name])

    def save(self, path: Path) -> None:
        save_file({name: tensor.contiguous() for name, tensor in self.average.items()}, str(path))

    def load(self, path: Path) -> None:
        """Replace the average by the one saved at ``path``.

        Raises:
            ValueError: if the saved average is not of this model's parameters.
        """
        loaded = load_file(str(path))
        if set(loaded) != set(self.average):
            raise ValueError(f"{path} is the average of another model's parameters: resume without --ema_decay, or "
                             "start afresh with --overwrite_output_dir")
        for name, tensor in loaded.items():
            self.average[name].copy_(tensor)


def is_better(candidate: float, incumbent: float, greater_is_better: bool) -> bool:
    """Whether ``candidate`` beats ``incumbent`` (a NaN never does; anything beats a NaN)."""
    if math.isnan(candidate):
        return False
    if math.isnan(incumbent):
        return True
    return candidate > incumbent if greater_is_better else candidate < incumbent


class EMAMixin:
    """Put before ``transformers.Trainer``: keep, evaluate and checkpoint an EMA of the weights (module docstring).

    Args:
        ema_decay: keyword argument, the decay ``d``; ``None`` turns the average off.
    """

    def __init__(self, *args: Any, ema_decay: Optional[float] = None, **kwargs: Any):
        self.ema_decay = ema_decay
        self.ema: Optional[WeightAverage] = None
        self._ema_chosen_at: Optional[int] = None  # the global step whose evaluation chose the average
        self._ema_resume_from: Optional[str] = None
        self._ema_in_training = False
        super().__init__(*args, **kwargs)
        if ema_decay is not None:
            if not 0 < ema_decay < 1:
                raise ValueError(f"--ema_decay must be in (0, 1), got {ema_decay}")
            self.add_callback(_AverageEachStep(self))

    def train(self, resume_from_checkpoint=None, *args: Any, **kwargs: Any):
        """``Trainer.train``, noting the checkpoint to resume the average from."""
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(self.args.output_dir)
        self._ema_resume_from = resume_from_checkpoint or None
        self._ema_in_training = True
        try:
            return super().train(resume_from_checkpoint, *args, **kwargs)
        finally:
            self._ema_in_training = False

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> Dict[str, float]:
        """``Trainer.evaluate``; during training with the average on, also the average's scores, and the better of
        the two as the returned ``{prefix}_*`` metrics (see the module docstring)."""
        trained = super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        if self.ema is None or not self._ema_in_training:
            return trained
        with self.ema.applied_to(self.model):
            averaged = super().evaluate(eval_dataset, ignore_keys, f"{metric_key_prefix}_ema")
        metric = self.args.metric_for_best_model or "loss"
        greater = self.args.greater_is_better if self.args.greater_is_better is not None else metric != "loss"
        metric = metric if metric.startswith(f"{metric_key_prefix}_") else f"{metric_key_prefix}_{metric}"
        averaged_score = averaged.get(metric.replace(f"{metric_key_prefix}_", f"{metric_key_prefix}_ema_", 1))
        chosen = averaged_score is not None and is_better(averaged_score, trained[metric], greater)
        self._ema_chosen_at = self.state.global_step if chosen else None
        self.log({"ema_chosen": float(chosen)})
        if not chosen:
            return {**trained, **averaged}
        prefix = f"{metric_key_prefix}_ema_"
        as_chosen = {f"{metric_key_prefix}_{key[len(prefix):]}": value for key, value in averaged.items()
                     if key.startswith(prefix)}
        return {**trained, **averaged, **as_chosen}

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
        """``save_model``; a checkpoint gets the average as its model when the last evaluation chose it, and
        ``ema.safetensors`` (plus ``training_weights.safetensors`` then)."""
        folder = Path(output_dir if output_dir is not None else self.args.output_dir)
        if self.ema is None or not _CHECKPOINT.match(folder.name):
            return super().save_model(output_dir, _internal_call)
        chosen = self._ema_chosen_at == self.state.global_step
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        if chosen:
            with self.ema.applied_to(model):
                super().save_model(output_dir, _internal_call)
        else:
            super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            folder.mkdir(parents=True, exist_ok=True)
            self.ema.save(folder / EMA_WEIGHTS)
            if chosen:
                save_model(model, str(folder / TRAINING_WEIGHTS))
            logger.info("%s holds the %s weights as its model", folder.name, "averaged" if chosen else "trained")
        return None

    def _start_average(self, model: torch.nn.Module) -> None:
        folder = Path(self._ema_resume_from) if self._ema_resume_from else None
        if folder is not None and (folder / TRAINING_WEIGHTS).is_file():
            load_model(model, str(folder / TRAINING_WEIGHTS))  # the checkpoint's model is the average: train on
        self.ema = WeightAverage(model, self.ema_decay)
        if folder is None:
            return
        if (folder / EMA_WEIGHTS).is_file():
            self.ema.load(folder / EMA_WEIGHTS)
        else:
            logger.warning("%s has no %s: the average restarts from the resumed weights", folder, EMA_WEIGHTS)


class _AverageEachStep(TrainerCallback):
    """Starts the average when training starts (from the resumed checkpoint, if any) and updates it after each
    optimizer step."""

    def __init__(self, trainer: EMAMixin):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.trainer._start_average(self.trainer.model)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.trainer.ema.update(self.trainer.model)
