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
  ``inference_device_iterations`` 4 for evaluation;
- ``replicated_tensor_sharding`` true, as in Graphcore's ``Graphcore/vit-base-ipu``: optimum-graphcore 0.7.1 applies
  it only with more than one replica, so it changes nothing on 4 IPUs and, with ``--n_ipu 16`` (4 replicas), shards
  the off-chip AdamW state across the replicas instead of keeping a full copy per replica.

On IPUs the recipe also differs from GPUs in ways this module takes care of:

- its argument defaults are the settings of Graphcore's ViT tutorial (:data:`TUTORIAL_SETTINGS`, :func:`ipu_defaults`);
- a device step consumes a fixed number of images, so :func:`check_device_steps` refuses a split that the steps would
  not cover exactly (evaluation) or at all (training), before any work starts;
- ``IPUTrainer`` saves fp16 ``pytorch_model.bin`` weights; the published model is rewritten as float32
  ``model.safetensors`` (:func:`publish_weights_as_safetensors`), while checkpoints keep ``IPUTrainer``'s format,
  which its resume and ``load_best_model_at_end`` read;
- the card reports the optimizer and batch that ``IPUTrainer`` really uses (:func:`ipu_hyperparameters`), and the
  published ``ipu_config.json`` is the ``IPUConfig`` the run used, with ``--n_ipu`` and ``--ipu_config_overrides``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from functools import lru_cache, reduce
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from nih_chestxray14.files import atomic_path, atomic_write, atomic_write_json

logger = logging.getLogger(__name__)

DEFAULT_IPU_CONFIG = Path(__file__).resolve().parent / "configs" / "vit-base-ipu.json"
"""The project's ``IPUConfig`` for ViT-Base on 4 IPUs, written when no ``--ipu_config_name`` is given."""

IPU_CONFIG_NAME = "ipu_config.json"
"""The file name optimum-graphcore's ``IPUConfig.from_pretrained`` reads, locally and on the Hub."""

TUTORIAL_SETTINGS: Dict[str, Any] = {
    "learning_rate": 2e-4,
    "lr_scheduler_type": "cosine",
    "warmup_ratio": 0.25,
    # The tutorial sets no pod type (optimum-graphcore 0.7.1's --n_ipu): the IPUConfig's replication factor decides,
    # 1 for Graphcore/vit-base-ipu and the project's config, so one 4-IPU pipeline. A POD16 is --n_ipu 16.
    "n_ipu": None,
    # Nor a data-loader mode: optimum-graphcore's default, "sync" (its workers still prefetch in the background).
    "dataloader_mode": "sync",
}
"""The IPU defaults of the recipe: the ``IPUTrainingArguments`` of Graphcore's tutorial "Training a Hugging Face model
on the IPU using a local dataset" (graphcore/tutorials, ``tutorials/pytorch/vit_model_training/walkthrough.py``, 2022),
which fine-tunes google/vit-base-patch16-224-in21k on NIH ChestX-ray14 with ``Graphcore/vit-base-ipu``. Gradient
accumulation is left to the IPUConfig (128), as in the tutorial, and so are the batch sizes (1 per device, the default
of ``IPUTrainingArguments`` and the tutorial's value). The tutorial's ``dataloader_drop_last=True`` is left out:
``IPUTrainer`` always drops the incomplete last training step, and for evaluation it would drop images
(:func:`check_device_steps` makes sure no split needs it)."""

TUTORIAL_DATALOADER_WORKERS = 8
"""The tutorial's ``dataloader_num_workers``; :func:`ipu_defaults` takes fewer on a host with fewer CPUs."""

_INSTALL_HINT = (
    "Training on IPUs needs optimum-graphcore 0.7.1 and poptorch. Install Graphcore's Poplar SDK, enable it "
    "(source <sdk>/enable), pip install the poptorch wheel that ships with the SDK, then "
    "`pip install optimum-graphcore==0.7.1` in that environment. optimum-graphcore pins transformers 4.29, so use "
    "a virtual environment of its own, as `make ipu-env` builds from requirements-ipu.txt (see README, On IPUs). "
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

    It overrides only public methods of ``IPUTrainer`` (its data loaders and ``save_model``). The transformers 4.29 that
    optimum-graphcore runs on saves checkpoints under the model's own weight names, so the checkpoint fix of
    :class:`~training.trainer.ChestXray14Trainer` isn't needed here.
    """

    class ChestXray14IPUTrainer(ipu_trainer):
        """optimum-graphcore's ``IPUTrainer`` as the recipe uses it: splits are checked against the device's step
        sizes before a data loader is built (:func:`check_device_steps`), and the published model is saved as
        float32 safetensors (:func:`publish_weights_as_safetensors`)."""

        def get_train_dataloader(self):
            check_device_steps(self, {"train": len(self.train_dataset)})
            return super().get_train_dataloader()

        def get_eval_dataloader(self, eval_dataset=None):
            dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
            if dataset is not None:
                check_device_steps(self, {"validation": len(dataset)})
            return super().get_eval_dataloader(eval_dataset)

        def get_test_dataloader(self, test_dataset):
            check_device_steps(self, {"test": len(test_dataset)})
            return super().get_test_dataloader(test_dataset)

        def save_model(self, output_dir: Optional[str] = None, _internal_call: bool = False) -> None:
            super().save_model(output_dir, _internal_call=_internal_call)
            from training.trainer import CHECKPOINT_PATTERN

            folder = Path(output_dir if output_dir is not None else self.args.output_dir)
            if self.args.should_save and not CHECKPOINT_PATTERN.match(folder.name):
                publish_weights_as_safetensors(folder)

    return ChestXray14IPUTrainer


def ipu_defaults(cpus: Optional[int] = None) -> Dict[str, Any]:
    """The recipe's argument defaults on IPUs: :data:`TUTORIAL_SETTINGS`, and the tutorial's 8 data-loader workers
    (fewer when the host has fewer than 9 CPUs, ``cpus`` - 1 then, at least 1), which decode, augment and normalise
    on the host (:class:`~training.data.AugmentingCollator`)."""
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return {**TUTORIAL_SETTINGS, "dataloader_num_workers": max(1, min(TUTORIAL_DATALOADER_WORKERS, cpus - 1))}


def device_steps(training_args: Any, ipu_config: Any) -> Tuple[int, int]:
    """Images per device step: ``(training, inference)``.

    Training: ``per_device_train_batch_size`` x ``gradient_accumulation_steps`` x ``replication_factor`` x
    ``device_iterations``. Inference: ``per_device_eval_batch_size`` x ``inference_replication_factor`` x
    ``inference_device_iterations``. ``ipu_config`` is the one the trainer uses (``trainer.ipu_config``, after
    ``--n_ipu`` and ``--ipu_config_overrides``).
    """
    return (training_args.per_device_train_batch_size * ipu_config.batch_size_factor(),
            training_args.per_device_eval_batch_size * ipu_config.batch_size_factor(for_inference=True))


def check_device_steps(trainer: Any, split_sizes: Mapping[str, int]) -> None:
    """Check that the IPUs' fixed step sizes fit the splits: ``"train"`` (the training split) must fill one training
    step, and every other split (scored) must be a whole number of inference steps.

    A device step has a fixed batch size: an evaluated split that is not a multiple of it would lose its last images
    (``drop_last``) or be refused by poptorch, and padding the batch repeats images that ``IPUTrainer`` then scores
    twice. A training split smaller than one step would train on nothing.

    Raises:
        ValueError: naming the split, its size, how the step size is made up, and what to set instead.
    """
    args, ipu_config = trainer.args, trainer.ipu_config
    training_step, inference_step = device_steps(args, ipu_config)
    train_size = split_sizes.get("train")
    if train_size is not None and train_size < training_step:
        raise ValueError(
            f"the training split has {train_size:,} images, fewer than one training step on the IPUs takes: "
            f"--per_device_train_batch_size {args.per_device_train_batch_size} x gradient_accumulation_steps "
            f"{ipu_config.gradient_accumulation_steps} x replication_factor {ipu_config.replication_factor} x "
            f"device_iterations {ipu_config.device_iterations} = {training_step:,}, so it would train on nothing. "
            "Lower them (e.g. --ipu_config_overrides gradient_accumulation_steps=N) or train on more images"
        )
    scored = {split: size for split, size in split_sizes.items() if split != "train"}
    uneven = {split: size for split, size in scored.items() if size % inference_step}
    if not uneven:
        return
    batch, iterations = args.per_device_eval_batch_size, ipu_config.inference_device_iterations
    replicas = ipu_config.inference_replication_factor
    sizes = ", ".join(f"{split} {size:,}" for split, size in scored.items())
    split, size = next(iter(uneven.items()))
    raise ValueError(
        f"the {split} split has {size:,} images, not a whole number of inference steps on the IPUs: "
        f"--per_device_eval_batch_size {batch} x inference_device_iterations {iterations} x "
        f"inference_replication_factor {replicas} = {inference_step:,} images per step, which leaves "
        f"{size % inference_step:,} over; the last step would drop them or score repeated images. Choose sizes whose "
        f"product divides every scored split ({sizes}): {_inference_step_advice(scored, batch, iterations, replicas)}"
    )


def _inference_step_advice(sizes: Mapping[str, int], batch_size: int, iterations: int, replicas: int) -> str:
    """What to set so that an inference step divides every split in ``sizes``, in words."""
    common = reduce(math.gcd, sizes.values())
    current = batch_size * iterations * replicas
    fitting = [step for step in range(replicas, min(common, current) + 1, replicas) if common % step == 0]
    advice = []
    if fitting:
        per_replica = fitting[-1] // replicas
        batch = batch_size if per_replica % batch_size == 0 else 1
        step = fitting[-1]
        advice.append(f"e.g. --per_device_eval_batch_size {batch} with inference_device_iterations="
                      f"{per_replica // batch} in --ipu_config_overrides ({step:,} image{'s' * (step > 1)} per step)")
    else:
        advice.append(f"no step that is a multiple of the {replicas} inference replicas does; lower "
                      "inference_replication_factor in --ipu_config_overrides")
    advice.append("or score a whole number of steps with --max_eval_samples / --max_predict_samples")
    return "; ".join(advice)


def ipu_hyperparameters(trainer: Any) -> Dict[str, Any]:
    """What the card says about a run on IPUs, replacing the GPU/CPU entries of ``training.publish.hyperparameters``:
    the optimizer ``IPUTrainer`` builds, the batch of one weight update, the pipeline and the precision. ``{}`` for
    a trainer without an ``ipu_config`` (GPUs and CPUs)."""
    ipu_config = getattr(trainer, "ipu_config", None)
    if ipu_config is None:
        return {}
    args = trainer.args
    accumulation, replicas = ipu_config.gradient_accumulation_steps, ipu_config.replication_factor
    return {
        "gradient_accumulation_steps": accumulation,
        "total_train_batch_size": args.per_device_train_batch_size * accumulation * replicas,
        "replication_factor": replicas,
        "ipus": replicas * ipu_config.ipus_per_replica,
        "layers_per_ipu": list(ipu_config.layers_per_ipu),
        "device_iterations": ipu_config.device_iterations,
        "eval_batch_per_step": device_steps(args, ipu_config)[1],
        "optimizer": _optimizer_text(args),
        "precision": "fp32" if args.fp32 else "fp16 (the whole model, as IPUTrainer runs it; published as float32)",
    }


def _optimizer_text(args: Any) -> str:
    """The optimizer ``IPUTrainer.create_optimizer`` (optimum-graphcore 0.7.1) builds from ``args``, in words."""
    moment = "fp32" if args.fp32 else "fp16"
    if args.lamb or args.lamb_no_bias_correction:
        correction = "without" if args.lamb_no_bias_correction else "with"
        name = f"poptorch LAMB ({correction} bias correction, biases without the trust ratio"
    else:
        name = (f"poptorch AdamW (betas ({args.adam_beta1:g}, {args.adam_beta2:g}), eps {args.adam_epsilon:g}, "
                "without bias correction")
    scaling = f", loss scaling {args.loss_scaling:g}" if args.loss_scaling else ""
    return (f"{name}, first moment in {moment}, second in fp32{scaling}; weight decay {args.weight_decay:g} except "
            "LayerNorm and biases; no gradient clipping)")


def publish_weights_as_safetensors(folder: str | os.PathLike) -> Path:
    """Replace ``IPUTrainer``'s ``pytorch_model.bin`` in ``folder`` by ``model.safetensors`` in float32, and set
    ``config.json``'s ``torch_dtype`` to match. Returns the safetensors file.

    ``IPUTrainer`` saves the model as it trains it: halved to fp16, in a pickle. The published model must load from
    safetensors (``from_pretrained(..., use_safetensors=True)``, as the recipe and the demo page load it), and in
    float32, like a model trained on GPUs or CPUs, so that fine-tuning it further does not start from fp16 weights.
    Upcasting fp16 to float32 is exact. Each file is written atomically; the pickle is removed last.

    Raises:
        ValueError: if ``folder`` holds sharded weights or no ``pytorch_model.bin``, naming the folder.
    """
    import torch
    from safetensors.torch import save_file
    from transformers.utils import CONFIG_NAME, SAFE_WEIGHTS_NAME, WEIGHTS_INDEX_NAME, WEIGHTS_NAME

    folder = Path(folder)
    pickle = folder / WEIGHTS_NAME
    if (folder / WEIGHTS_INDEX_NAME).exists() or not pickle.is_file():
        raise ValueError(f"{folder}: expected IPUTrainer's single {WEIGHTS_NAME}, found "
                         f"{sorted(path.name for path in folder.glob('pytorch_model*'))}")
    state_dict = torch.load(pickle, map_location="cpu", weights_only=True)
    tensors = {name: (tensor.float() if tensor.is_floating_point() else tensor).contiguous()
               for name, tensor in state_dict.items()}
    target = folder / SAFE_WEIGHTS_NAME
    with atomic_path(target) as partial:
        save_file(tensors, str(partial), metadata={"format": "pt"})
    config_path = folder / CONFIG_NAME
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config["torch_dtype"] = "float32"
    atomic_write_json(config_path, config, sort_keys=True)
    pickle.unlink()
    logger.info("Saved the model as float32 %s (IPUTrainer trains and saves it in fp16)", target)
    return target


def load_ipu_config(ipu_config_name: str) -> Any:
    """Load ``optimum.graphcore.IPUConfig`` from a Hub id or a local path (the IPU path only).

    Raises:
        IPUUnavailableError: if optimum-graphcore cannot be imported.
    """
    graphcore = _import_optimum_graphcore(ipu_config_name)
    return graphcore.IPUConfig.from_pretrained(ipu_config_name)


def write_ipu_config(output_dir: str | os.PathLike, ipu_config_name: Optional[str] = None,
                     ipu_config: Any = None) -> Path:
    """Write ``output_dir/ipu_config.json`` and return its path.

    On IPUs, ``ipu_config`` is the ``IPUConfig`` the trainer used (``trainer.ipu_config``: the named config with
    ``--n_ipu`` and ``--ipu_config_overrides`` applied), and the file is what its ``save_pretrained`` writes. Otherwise
    the file is a copy of ``ipu_config_name``: a local ``.json`` file, a local folder holding ``ipu_config.json``, or a
    Hub repo id fetched with ``huggingface_hub`` (which works without optimum-graphcore); with
    ``ipu_config_name=None`` it is :data:`DEFAULT_IPU_CONFIG`. The file is written atomically, so a failure never
    leaves a half-written ``ipu_config.json``.

    Raises:
        IPUConfigNotFoundError: if ``ipu_config_name`` is neither a local config nor a Hub repo serving one.
        ValueError: if the config is not a JSON object; the message names the file.
    """
    if ipu_config is not None:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        target = atomic_write(output_dir / IPU_CONFIG_NAME, ipu_config.to_json_string(use_diff=True))
        logger.info("Wrote %s: the IPUConfig this run used", target)
        return target
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
