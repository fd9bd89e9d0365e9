"""The optional IPU path: swap transformers' Trainer for optimum-graphcore's IPUTrainer, and ship an ``ipu_config.json``.

The recipe's ``main()`` is the same on GPUs, CPUs and IPUs. It asks :func:`trainer_classes` for a ``(Trainer,
TrainingArguments)`` pair: the recipe's :class:`~training.trainer.ChestXray14Trainer`, or, only when
``--ipu_config_name`` is given, ``ChestXray14IPUTrainer`` (a subclass of optimum-graphcore's ``IPUTrainer``, defined
here) with ``IPUTrainingArguments``. optimum-graphcore (0.7.1 pins transformers 4.29 and needs ``poptorch`` from
Graphcore's Poplar SDK) is imported lazily, here and nowhere else.

Every run writes ``ipu_config.json`` next to the model, so IPU users can fine-tune further: the config that was used,
or by default :data:`DEFAULT_IPU_CONFIG`, the project's config for ViT-Base on 4 IPUs. That file holds only fields of
optimum-graphcore 0.7.1's ``IPUConfig``, which rejects unknown keys:

- ``layers_per_ipu`` ``[3, 3, 3, 3]``: the 12 encoder layers of ViT-Base pipelined over 4 IPUs (the patch embedding
  sits on the first IPU, the classifier on the last); ``replication_factor`` 1, so one pipeline fills 4 IPUs;
- ``matmul_proportion`` 0.3 and ``enable_half_partials``: more temporary memory for the attention and MLP matmuls,
  fp16 partials;
- ``recompute_checkpoint_every_layer`` and ``optimizer_state_offchip``: recompute activations from a checkpoint per
  layer and keep the AdamW state in streaming memory, which is what lets ViT-Base fit in the IPUs' on-chip SRAM;
- ``gradient_accumulation_steps`` 128: a deep pipeline needs many micro-batches to keep every stage busy;
- ``embedding_serialization_factor`` / ``projection_serialization_factor`` 1: ViT has no vocabulary embedding and a
  14-way head, so nothing needs serialising;
- ``device_iterations`` 1 for training (each step already runs 128 micro-batches on the device) and
  ``inference_device_iterations`` 4 for evaluation.
"""

from __future__ import annotations

import json
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Optional, Tuple

from nih_chestxray14.files import atomic_write

logger = logging.getLogger(__name__)

DEFAULT_IPU_CONFIG = Path(__file__).resolve().parent / "configs" / "vit-base-ipu.json"
"""The project's ``IPUConfig`` for ViT-Base on 4 IPUs, written when no ``--ipu_config_name`` is given."""

IPU_CONFIG_NAME = "ipu_config.json"
"""The file name optimum-graphcore's ``IPUConfig.from_pretrained`` reads, locally and on the Hub."""

_INSTALL_HINT = (
    "Training on IPUs needs optimum-graphcore 0.7.1 and poptorch. Install Graphcore's Poplar SDK, enable it "
    "(source <sdk>/enable), pip install the poptorch wheel that ships with the SDK, then "
    "`pip install optimum-graphcore==0.7.1` (or this project's `ipu` extra) in that environment. "
    "optimum-graphcore pins transformers 4.29, so use a separate virtual environment from the GPU/CPU recipe. "
    "Leave out --ipu_config_name to train with transformers' Trainer instead."
)


class IPUUnavailableError(ImportError):
    """``--ipu_config_name`` was given but optimum-graphcore (or the poptorch it needs) cannot be imported."""


class IPUConfigNotFoundError(FileNotFoundError):
    """An ``ipu_config_name`` that is neither a local ``ipu_config.json`` (or a folder holding one) nor a Hub repo
    that serves one."""


def trainer_classes(ipu_config_name: Optional[str]) -> Tuple[type, type]:
    """Return the ``(Trainer, TrainingArguments)`` classes the recipe should use.

    Args:
        ipu_config_name: ``None`` for GPUs/CPUs, which selects ``(ChestXray14Trainer, TrainingArguments)``; otherwise
            a Hub id such as ``"Graphcore/vit-base-ipu"`` or a local path, which selects ``(ChestXray14IPUTrainer,
            IPUTrainingArguments)``.

    Raises:
        IPUUnavailableError: if an IPU config is named but ``optimum.graphcore`` cannot be imported; the message says
            what to install.
    """
    if ipu_config_name is None:
        from transformers import TrainingArguments

        from training.trainer import ChestXray14Trainer

        return ChestXray14Trainer, TrainingArguments
    graphcore = _import_optimum_graphcore(ipu_config_name)
    return ipu_trainer_class(graphcore.IPUTrainer), graphcore.IPUTrainingArguments


@lru_cache(maxsize=None)
def ipu_trainer_class(ipu_trainer: type) -> type:
    """The recipe's IPU trainer: a subclass of optimum-graphcore's ``IPUTrainer`` (passed in, as it is imported lazily).

    It adds nothing yet: the transformers 4.29 that optimum-graphcore runs on saves checkpoints under the model's own
    weight names, so the checkpoint fix of :class:`~training.trainer.ChestXray14Trainer` isn't needed here. It is the
    place for the recipe's overrides on IPUs.
    """

    class ChestXray14IPUTrainer(ipu_trainer):
        """optimum-graphcore's ``IPUTrainer`` as the recipe uses it."""

    return ChestXray14IPUTrainer


def load_ipu_config(ipu_config_name: str) -> Any:
    """Load ``optimum.graphcore.IPUConfig`` from a Hub id or a local path (the IPU path only).

    Raises:
        IPUUnavailableError: if optimum-graphcore cannot be imported.
    """
    graphcore = _import_optimum_graphcore(ipu_config_name)
    return graphcore.IPUConfig.from_pretrained(ipu_config_name)


def write_ipu_config(output_dir: str | os.PathLike, ipu_config_name: Optional[str] = None) -> Path:
    """Write ``output_dir/ipu_config.json`` and return its path.

    The file is a copy of the config that was used: ``ipu_config_name`` as a local ``.json`` file, a local folder
    holding ``ipu_config.json``, or a Hub repo id fetched with ``huggingface_hub`` (which works without
    optimum-graphcore). With ``ipu_config_name=None`` it is :data:`DEFAULT_IPU_CONFIG`. The copy is written atomically,
    so a failure never leaves a half-written ``ipu_config.json``.

    Raises:
        IPUConfigNotFoundError: if ``ipu_config_name`` is neither a local config nor a Hub repo serving one.
        ValueError: if the config is not a JSON object; the message names the file.
    """
    source = DEFAULT_IPU_CONFIG if ipu_config_name is None else _locate_ipu_config(ipu_config_name)
    data = Path(source).read_bytes()
    try:
        config = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{source} is not valid JSON ({error}); an IPU config must be a JSON object.") from None
    if not isinstance(config, dict):
        raise ValueError(f"{source} holds a JSON {type(config).__name__}; an IPU config must be a JSON object.")

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    target = atomic_write(output_dir / IPU_CONFIG_NAME, data)
    logger.info("Wrote %s from %s", target, ipu_config_name or DEFAULT_IPU_CONFIG.name)
    return target


def _import_optimum_graphcore(ipu_config_name: str):
    try:
        import optimum.graphcore as graphcore
    except ImportError as error:
        raise IPUUnavailableError(
            f"--ipu_config_name {ipu_config_name!r} asks for IPUs, but optimum.graphcore cannot be imported "
            f"({error}). {_INSTALL_HINT}"
        ) from error
    return graphcore


def _locate_ipu_config(ipu_config_name: str) -> Path:
    local = Path(ipu_config_name).expanduser()
    if local.is_dir():
        local = local / IPU_CONFIG_NAME
        if not local.is_file():
            raise IPUConfigNotFoundError(f"{local} does not exist: the folder {ipu_config_name} holds no IPU config.")
        return local
    if local.is_file():
        return local
    if local.suffix == ".json" or ipu_config_name.startswith((".", "/", "~")):
        raise IPUConfigNotFoundError(f"IPU config file {ipu_config_name} does not exist.")

    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=ipu_config_name, filename=IPU_CONFIG_NAME))
    except (OSError, ValueError) as error:
        # OSError covers huggingface_hub's HTTP, not-found and offline errors; ValueError an invalid repo id.
        raise IPUConfigNotFoundError(
            f"Could not fetch {IPU_CONFIG_NAME} from the Hub repo {ipu_config_name!r} "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else 'no details'}), "
            "and no local file or folder has that name. Pass a local path or a Hub id that holds an "
            f"{IPU_CONFIG_NAME}, such as Graphcore/vit-base-ipu."
        ) from None
