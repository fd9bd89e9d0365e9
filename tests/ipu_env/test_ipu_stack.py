"""The IPU stack in its own environment: optimum-graphcore 0.7.1 on stand-ins for Graphcore's SDK, up to the device.

These tests run in ``.venv-ipu`` only (``make test-ipu``), with ``tests/ipu_sdk_stand_in`` on the path in place of
the Poplar SDK's ``poptorch`` and ``popart``. They check what can be checked without an IPU: the project's
``IPUConfig``, the pipelined ViT it produces, the ``IPUTrainer`` set-up and its data loading, and that the data
exported by the main environment reads the same here. The recipe's own run is in ``test_recipe_on_ipus.py``.
Compiling and running on an IPU is not tested anywhere.
"""

from __future__ import annotations

import json
import math
from importlib import metadata
from pathlib import Path

import datasets
import popart
import pyarrow as pa
import poptorch
import pytest
import torch
import transformers
from optimum.graphcore import IPUConfig, IPUTrainer, IPUTrainingArguments
from optimum.graphcore.ipu_configuration import IncompatibleIPUConfigError
from optimum.graphcore.modeling_utils import to_pipelined
from packaging.version import Version

import nih_chestxray14
from training.ipu import DEFAULT_IPU_CONFIG, load_ipu_config, trainer_classes

STAND_IN = Path(__file__).resolve().parents[1] / "ipu_sdk_stand_in"
NUM_LABELS = 14
VIT_BASE_LAYERS = 12


def tiny_vit(num_hidden_layers: int = VIT_BASE_LAYERS) -> transformers.ViTForImageClassification:
    """ViT-Base's layout (12 encoder layers) at a width that builds in milliseconds, with the recipe's 14-way head."""
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=num_hidden_layers, num_attention_heads=4, intermediate_size=64,
        image_size=32, patch_size=8, num_labels=NUM_LABELS, problem_type="multi_label_classification",
    )
    torch.manual_seed(0)
    return transformers.ViTForImageClassification(config)


def project_ipu_config() -> IPUConfig:
    return load_ipu_config(str(DEFAULT_IPU_CONFIG))


# ---- the environment -----------------------------------------------------------------------------------------------
def test_the_environment_is_the_one_optimum_graphcore_0_7_1_pins():
    assert metadata.version("optimum-graphcore") == "0.7.1"
    assert metadata.version("optimum") == "1.6.1"
    assert metadata.version("transformers") == "4.29.2"
    assert Version(metadata.version("datasets")).major == 3
    assert Version(metadata.version("huggingface_hub")) < Version("1")
    assert Version(metadata.version("numpy")) < Version("1.24")


def test_poptorch_and_popart_are_the_stand_ins_for_the_sdk():
    for module in (poptorch, popart):
        assert Path(module.__file__).resolve().is_relative_to(STAND_IN), module.__file__


def test_the_recipe_picks_optimum_graphcores_trainer_for_an_ipu_config():
    trainer_class, arguments_class = trainer_classes(str(DEFAULT_IPU_CONFIG))
    assert issubclass(trainer_class, IPUTrainer) and trainer_class.__name__ == "ChestXray14IPUTrainer"
    assert arguments_class is IPUTrainingArguments


# ---- the project's IPUConfig ---------------------------------------------------------------------------------------
def test_the_projects_ipu_config_loads_with_every_value_it_holds():
    written = json.loads(DEFAULT_IPU_CONFIG.read_text(encoding="utf-8"))
    ipu_config = project_ipu_config()
    loaded = ipu_config.to_dict()
    assert {key: loaded[key] for key in written} == written


def test_the_projects_ipu_config_round_trips_through_save_pretrained(tmp_path):
    ipu_config = project_ipu_config()
    ipu_config.save_pretrained(tmp_path)
    assert (tmp_path / "ipu_config.json").is_file()
    assert IPUConfig.from_pretrained(str(tmp_path)).to_dict() == ipu_config.to_dict()


def test_the_poptorch_options_carry_the_pipeline_and_batch_settings():
    ipu_config = project_ipu_config()
    training = ipu_config.to_options()
    assert training.replication_factor == 1
    assert training.device_iterations == 1
    assert training.Training.gradient_accumulation == 128
    assert training.values["availableMemoryProportion"] == {f"IPU{i}": 0.3 for i in range(4)}
    assert isinstance(training.values["executionStrategy"], poptorch.PipelinedExecution)
    assert training.Precision.values["partialsType"] == torch.float16
    inference = ipu_config.to_options(for_inference=True)
    assert inference.device_iterations == 4
    assert inference.Training.gradient_accumulation == 1
    assert isinstance(inference.values["executionStrategy"], poptorch.ShardedExecution)


@pytest.mark.parametrize("replication_factor, sharded", [(1, False), (4, True)])
def test_replicated_tensor_sharding_takes_effect_only_with_replicas(replication_factor, sharded):
    # The project's config asks for it, as Graphcore/vit-base-ipu does; optimum-graphcore shards the optimizer state
    # over replicas only when there are several of them (--n_ipu 16 gives 4).
    ipu_config = project_ipu_config()
    assert ipu_config.replicated_tensor_sharding is True
    ipu_config.replication_factor = replication_factor
    location = ipu_config.to_options().TensorLocations.values["optimizerLocation"]
    assert location.replicated_tensor_sharding is sharded
    assert location.on_chip is False  # optimizer_state_offchip


# ---- the pipelined model -------------------------------------------------------------------------------------------
def test_the_pipelined_vit_puts_three_encoder_layers_on_each_of_four_ipus():
    ipu_config = project_ipu_config()
    model = to_pipelined(tiny_vit(), ipu_config).parallelize()
    assert type(model).__name__ == "PipelinedViTForImageClassification"
    layers = model.vit.encoder.layer
    assert [poptorch.block_of(layer).ipu_id for layer in layers] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert [poptorch.block_of(layer).user_id for layer in layers] == [f"Encoder{i}" for i in range(VIT_BASE_LAYERS)]
    assert poptorch.block_of(model.vit.embeddings) == poptorch.Block("Embedding", 0)
    assert poptorch.block_of(model.vit.layernorm) == poptorch.Block("LayerNorm", 3)
    assert poptorch.block_of(model.classifier) == poptorch.Block("Classifier", 3)


def test_the_pipelined_vit_runs_forward_on_the_host_and_deparallelizes():
    model = to_pipelined(tiny_vit(), project_ipu_config()).parallelize()
    labels = torch.zeros(2, NUM_LABELS)
    labels[0, 3] = 1.0
    output = model(pixel_values=torch.randn(2, 3, 32, 32), labels=labels)
    assert output.logits.shape == (2, NUM_LABELS)
    assert math.isfinite(output.loss.item())  # BCE with logits: the multi-label head
    model.deparallelize()
    assert all(poptorch.block_of(module) is None for module in model.modules())


def test_a_layers_per_ipu_that_does_not_cover_the_model_is_refused():
    with pytest.raises(IncompatibleIPUConfigError, match="12 layers but there are 2 layers in the model"):
        to_pipelined(tiny_vit(num_hidden_layers=2), project_ipu_config()).parallelize()


# ---- the trainer, up to the device ---------------------------------------------------------------------------------
class XrayBatches(torch.utils.data.Dataset):
    """Stands in for the recipe's transformed split: 32 x 32 images and 14-long multi-hot labels."""

    def __init__(self, size: int):
        generator = torch.Generator().manual_seed(0)
        self.pixels = torch.randn(size, 3, 32, 32, generator=generator)
        self.labels = (torch.rand(size, NUM_LABELS, generator=generator) < 0.2).float()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        return {"pixel_values": self.pixels[index], "labels": self.labels[index]}


def stack_batch(examples):
    return {key: torch.stack([example[key] for example in examples]) for key in examples[0]}


def roc_auc_stand_in(prediction):
    return {"roc_auc": 0.5}


def small_ipu_config() -> IPUConfig:
    ipu_config = project_ipu_config()
    ipu_config.gradient_accumulation_steps = 4
    return ipu_config


def make_trainer(tmp_path, **arguments) -> IPUTrainer:
    arguments.setdefault("dataloader_drop_last", True)
    args = IPUTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=2, per_device_eval_batch_size=2,
        remove_unused_columns=False, dataloader_mode="async_rebatched", dataloader_pin_memory=False, do_train=True,
        do_eval=True, learning_rate=2e-4, lr_scheduler_type="cosine", warmup_ratio=0.25, report_to="none",
        **arguments,
    )
    return IPUTrainer(
        model=tiny_vit(), ipu_config=small_ipu_config(), args=args, train_dataset=XrayBatches(40),
        eval_dataset=XrayBatches(16), data_collator=stack_batch, compute_metrics=roc_auc_stand_in,
    )


def test_the_trainer_keeps_our_collator_and_metric_and_batches_one_device_step(tmp_path):
    trainer = make_trainer(tmp_path)
    assert trainer.data_collator is stack_batch
    assert trainer.eval_data_collator is stack_batch
    assert trainer.compute_metrics is roc_auc_stand_in
    assert next(trainer.model.parameters()).dtype == torch.float16  # IPUTrainer halves the model unless --fp32
    loader = trainer.get_train_dataloader()
    assert loader.mode == poptorch.DataLoaderMode.AsyncRebatched
    assert loader.combinedBatchSize == 2 * 4  # micro-batch x gradient accumulation x replicas x device iterations
    assert len(loader) == 40 // 8
    batch = next(iter(loader))
    assert batch["pixel_values"].shape == (8, 3, 32, 32) and batch["labels"].shape == (8, NUM_LABELS)


def test_n_ipu_replicates_the_four_ipu_pipeline(tmp_path):
    trainer = make_trainer(tmp_path, n_ipu=16)  # an IPU-POD16
    assert trainer.ipu_config.replication_factor == 4
    assert trainer.opts.replication_factor == 4
    assert trainer.get_train_dataloader().combinedBatchSize == 2 * 4 * 4


def test_training_stops_where_poptorch_would_compile_for_the_ipu(tmp_path):
    trainer = make_trainer(tmp_path)
    with pytest.raises(poptorch.NoIPUError, match=r"no IPU here: poptorch\.trainingModel"):
        trainer.train()
    assert isinstance(trainer.optimizer, poptorch.optim.AdamW)
    assert trainer.optimizer.param_groups[0]["lr"] == 2e-4


def test_evaluation_stops_where_poptorch_would_compile_for_the_ipu(tmp_path):
    trainer = make_trainer(tmp_path)
    with pytest.raises(poptorch.NoIPUError, match=r"no IPU here: poptorch\.inferenceModel"):
        trainer.evaluate()


def test_evaluation_needs_a_split_that_fills_whole_device_steps(tmp_path):
    # One inference step takes per_device_eval_batch_size x inference_device_iterations x replicas = 2 x 4 x 1 images.
    # Without drop_last a split of 20 is refused; with it, the last 4 images would not be scored at all.
    trainer = make_trainer(tmp_path, dataloader_drop_last=False)
    assert len(trainer.get_eval_dataloader(XrayBatches(16))) == 2
    with pytest.raises(AssertionError, match=r"\(20\) is not divisible by the number of elements processed per step \(8\)"):
        trainer.get_eval_dataloader(XrayBatches(20))


def test_the_stand_in_refuses_every_way_onto_the_device():
    model = tiny_vit()
    for call in (lambda: poptorch.trainingModel(model), lambda: poptorch.inferenceModel(model),
                 lambda: poptorch.PoplarExecutor(model)):
        with pytest.raises(poptorch.NoIPUError, match="stand-in for Graphcore's poptorch"):
            call()
    optimizer = poptorch.optim.AdamW(model.parameters(), lr=1e-3)
    with pytest.raises(poptorch.NoIPUError, match="weight update runs on the IPU"):
        optimizer.step()


# ---- the data route ------------------------------------------------------------------------------------------------
def test_the_main_environments_export_reads_the_same_with_datasets_3(exported, tmp_path):
    folder, expected = exported
    dataset = datasets.load_dataset(str(folder), "resized-224", cache_dir=str(tmp_path / "cache"))
    assert sorted(dataset) == sorted(expected) == ["test", "train", "validation"]
    for split, rows in expected.items():
        assert dataset[split]["image_id"] == rows["image_id"], split
        assert [list(labels) for labels in dataset[split]["labels"]] == rows["labels"], split
        assert [[image.mode, list(image.size)] for image in dataset[split]["image"]] == rows["image"], split
        assert all(len(labels) == NUM_LABELS for labels in rows["labels"])


# ---- the project's package on datasets 3 ---------------------------------------------------------------------------
def test_the_project_package_imports_here_with_the_same_schema():
    import nih_chestxray14.labels

    assert len(nih_chestxray14.labels.LABELS) == NUM_LABELS
    # The schema's list features, in datasets 3's spelling, are the same Arrow types: labels stay 14 long.
    schema = nih_chestxray14.FEATURES.arrow_schema
    assert schema.field("labels").type == pa.list_(pa.int8(), NUM_LABELS)
    assert pa.types.is_list(schema.field("bboxes").type) and pa.types.is_struct(schema.field("bboxes").type.value_type)
