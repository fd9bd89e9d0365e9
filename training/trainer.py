"""The recipe's Trainer and its checkpoints: checkpoints that reload into the model that wrote them, and resuming from
the last checkpoint that was written to the end.

Why checkpoints need care: transformers 5 renamed many models' weights (ViT's ``encoder.layer.N.attention.attention
.query`` became ``layers.N.attention.q_proj``, ...). ``save_pretrained`` writes the old names by default, for older
readers, and ``from_pretrained`` maps them back. But the Trainer reloads its own checkpoints with a plain, non-strict
``model.load_state_dict``: with old names nothing matches, a warning lists every key as missing and unexpected, and the
model silently keeps its current weights. Resuming would then restart from random weights with a trained optimizer,
and ``load_best_model_at_end`` would publish the last model instead of the best. :class:`ChestXray14Trainer` therefore
writes *checkpoints* under the model's own names (``save_pretrained``'s public ``save_original_format=False``), which
that loader matches one to one. The final model in ``output_dir`` keeps the default, widely readable format.

Why resuming needs care: a run killed while it writes ``checkpoint-N`` leaves a folder that the Trainer can't resume
from (no weights yet: "Can't find a valid checkpoint"; no ``trainer_state.json``: a missing file). The Trainer writes
``trainer_state.json`` last, so :func:`is_complete_checkpoint` trusts a folder only once that file is whole.
:func:`checkpoint_to_resume` picks the newest complete checkpoint, and renames newer, incomplete ones to
``incomplete-checkpoint-N-<UTC time>`` (kept for the user to inspect or delete; the name keeps them out of the
Trainer's ``checkpoint-*`` rotation, which would delete them, and out of the upload).
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, List, Optional

import torch
from transformers import PreTrainedModel, Trainer
from transformers.trainer import TRAINER_STATE_NAME, TRAINING_ARGS_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

try:
    from transformers.utils import is_torch_xla_available
except ImportError:  # transformers 4.29 (the IPU environment, which uses only this module's checkpoint functions)
    from transformers.utils import is_torch_tpu_available as is_torch_xla_available

from training.augment import AugmentOnDeviceMixin
from training.ema import EMAMixin
from training.layer_decay import LayerDecayMixin

logger = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(rf"^{PREFIX_CHECKPOINT_DIR}-(\d+)$")
"""The Trainer's checkpoint folders: ``checkpoint-<global step>``."""

INCOMPLETE_PREFIX = "incomplete-"
"""Prefix of the name an incomplete checkpoint is set aside under (``incomplete-checkpoint-30-20250101T120000Z``)."""

WEIGHT_FILES = (SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHTS_NAME, WEIGHTS_INDEX_NAME)

SAVES_ORIGINAL_NAMES = "save_original_format" in inspect.signature(PreTrainedModel.save_pretrained).parameters
"""Whether this transformers renames weights on save (5.x). Older ones save under the model's own names already."""


class OwnWeightNamesMixin:
    """Put before ``transformers.Trainer``: checkpoints keep the model's own weight names (module docstring)."""

    def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
        """Save the model as ``Trainer.save_model`` does; a ``checkpoint-N`` folder keeps the model's own weight names.

        Only the plain path (one process, or DDP) is changed. DeepSpeed, FSDP, XLA and models sharded at load time save
        and reload through their own code, and ``output_dir`` itself (the published model) keeps the default format.
        """
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        model = self.accelerator.unwrap_model(self.model, keep_torch_compile=False)
        plain = isinstance(model, PreTrainedModel) and not (
            self.is_deepspeed_enabled or self.is_fsdp_enabled or is_torch_xla_available()
            or getattr(self, "is_distributed_loading_by_transformers", False)
        )
        if not (plain and SAVES_ORIGINAL_NAMES and CHECKPOINT_PATTERN.match(Path(output_dir).name)):
            return super().save_model(output_dir, _internal_call=_internal_call)
        if not self.args.should_save:
            return None
        # What Trainer.save_model writes into a checkpoint, with the one switch it doesn't expose.
        model.save_pretrained(output_dir, save_original_format=False)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, TRAINING_ARGS_NAME))
        return None


class ChestXray14Trainer(EMAMixin, LayerDecayMixin, AugmentOnDeviceMixin, OwnWeightNamesMixin, Trainer):
    """transformers' ``Trainer`` with the recipe's additions, each a mixin of its own:

    - checkpoints that reload into the model that wrote them (:class:`OwnWeightNamesMixin`, module docstring);
    - batches augmented and normalised on the model's device (:class:`~training.augment.AugmentOnDeviceMixin`);
    - layer-wise learning-rate decay with ``layer_decay=`` (:class:`~training.layer_decay.LayerDecayMixin`);
    - an average of the weights, evaluated and kept when better, with ``ema_decay=``
      (:class:`~training.ema.EMAMixin`).
    """


def is_complete_checkpoint(folder: Path) -> bool:
    """Whether the Trainer finished writing ``folder``: it holds weights and a whole ``trainer_state.json``.

    ``Trainer`` writes the weights, optimizer, scheduler and RNG states first and ``trainer_state.json`` last, so a
    readable state file means the checkpoint was written to the end.
    """
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        return False
    try:
        state = json.loads((folder / TRAINER_STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(state, dict) and "global_step" in state


def checkpoints_in(output_dir: Path) -> List[Path]:
    """The ``checkpoint-N`` folders of ``output_dir``, oldest (smallest N) first."""
    found = [(int(match.group(1)), path) for path in output_dir.iterdir()
             if path.is_dir() and (match := CHECKPOINT_PATTERN.match(path.name))]
    return [path for _, path in sorted(found)]


def last_complete_checkpoint(output_dir: Path, set_aside: bool = True) -> Optional[Path]:
    """The newest complete checkpoint in ``output_dir``, or ``None``.

    With ``set_aside``, each newer, incomplete ``checkpoint-N`` is renamed ``incomplete-checkpoint-N-<UTC time>`` and
    a warning says so; nothing is deleted.
    """
    for folder in reversed(checkpoints_in(output_dir)):
        if is_complete_checkpoint(folder):
            return folder
        if set_aside:
            _set_aside(folder)
    return None


def checkpoint_to_resume(training_args: Any, overwrite_output_dir: bool) -> Optional[str]:
    """The checkpoint to resume from: ``--resume_from_checkpoint``, else the newest complete one in ``output_dir``.

    With ``--overwrite_output_dir`` nothing is resumed and the old ``checkpoint-*`` folders are deleted first, so a
    later rerun can't pick one of them up. Every process of a distributed run gets the same answer; only the first
    process on each machine renames or deletes folders.

    Raises:
        ValueError: if ``--resume_from_checkpoint`` names a folder that is missing or incomplete.
    """
    if training_args.resume_from_checkpoint is not None:
        folder = Path(training_args.resume_from_checkpoint).expanduser()
        if not folder.is_dir():
            raise ValueError(f"--resume_from_checkpoint {folder}: no such folder")
        if not is_complete_checkpoint(folder):
            raise ValueError(
                f"--resume_from_checkpoint {folder} is incomplete (no weights or no whole {TRAINER_STATE_NAME}: the "
                "run that wrote it stopped while saving). Name an earlier checkpoint, or leave the flag out to resume "
                "from the newest complete one"
            )
        return str(folder)
    if not training_args.do_train:
        return None
    output_dir = Path(training_args.output_dir)
    first_on_machine = getattr(training_args, "local_process_index", 0) == 0  # IPUTrainingArguments: one process
    # Every process enters the barrier, whatever it finds on disk: a barrier only some processes enter hangs the run.
    with training_args.main_process_first(desc="finding the checkpoint to resume from"):
        if not output_dir.is_dir():
            checkpoint = None
        elif overwrite_output_dir:
            if first_on_machine:
                for old in checkpoints_in(output_dir):
                    shutil.rmtree(old, ignore_errors=True)
            checkpoint = None
        else:
            checkpoint = last_complete_checkpoint(output_dir, set_aside=first_on_machine)
    if checkpoint is None:
        return None
    logger.info("resuming training from %s (pass --overwrite_output_dir to start afresh)", checkpoint)
    return str(checkpoint)


def _set_aside(folder: Path) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = folder.with_name(f"{INCOMPLETE_PREFIX}{folder.name}-{stamp}")
    suffix = 1
    while target.exists():
        suffix += 1
        target = folder.with_name(f"{INCOMPLETE_PREFIX}{folder.name}-{stamp}-{suffix}")
    try:
        folder.rename(target)
    except FileNotFoundError:
        return  # another process on a shared file system set it aside first
    logger.warning(
        "%s is incomplete (the run that wrote it stopped while saving); set it aside as %s, which you may inspect or "
        "delete", folder, target.name,
    )
