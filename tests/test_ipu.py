"""The optional IPU path: the shipped IPUConfig, the Trainer import swap, and ipu_config.json in every output_dir."""

import importlib.util
import json
import sys

import pytest

from training import ipu

# The keyword arguments of IPUConfig.__init__ in optimum-graphcore 0.7.1
# (optimum/graphcore/ipu_configuration.py, class IPUConfig). Any other key makes that version raise
# IncompatibleIPUConfigError("IPUConfig received unknown arguments").
IPU_CONFIG_FIELDS_0_7_1 = {
    "replication_factor",
    "inference_replication_factor",
    "gradient_accumulation_steps",
    "layers_per_ipu",
    "inference_layers_per_ipu",
    "ipus_per_replica",
    "inference_ipus_per_replica",
    "optimizer_state_offchip",
    "replicated_tensor_sharding",
    "matmul_proportion",
    "inference_matmul_proportion",
    "enable_half_partials",
    "embedding_serialization_factor",
    "inference_embedding_serialization_factor",
    "serialized_embedding_splits_per_ipu",
    "inference_serialized_embedding_splits_per_ipu",
    "projection_serialization_factor",
    "inference_projection_serialization_factor",
    "serialized_projection_splits_per_ipu",
    "inference_serialized_projection_splits_per_ipu",
    "recompute_checkpoint_every_layer",
    "device_iterations",
    "inference_device_iterations",
    "output_mode",
    "seed",
    "auto_loss_scaling",
    "executable_cache_dir",
    "explicit_ir_inference",
    "parallelize_kwargs",
    "inference_parallelize_kwargs",
}
# Keys that the same file pops with a deprecation warning (older Graphcore Hub configs still carry them), plus the
# internal key it pops with a "remove this" note.
DEPRECATED_IPU_CONFIG_KEYS = {
    "sharded_execution_for_inference",
    "enable_half_first_order_momentum",
    "execute_encoder_on_cpu_for_generation",
}
VIT_BASE_NUM_HIDDEN_LAYERS = 12  # google/vit-base-patch16-224-in21k's config.json


@pytest.fixture(scope="module")
def default_config():
    return json.loads(ipu.DEFAULT_IPU_CONFIG.read_text(encoding="utf-8"))


def test_default_config_holds_only_fields_of_optimum_graphcore_0_7_1(default_config):
    assert set(default_config) <= IPU_CONFIG_FIELDS_0_7_1, set(default_config) - IPU_CONFIG_FIELDS_0_7_1
    assert not set(default_config) & DEPRECATED_IPU_CONFIG_KEYS


def test_default_config_pipelines_vit_base_over_four_ipus(default_config):
    for key in ("layers_per_ipu", "inference_layers_per_ipu"):
        layers = default_config[key]
        assert layers == [3, 3, 3, 3]
        assert sum(layers) == VIT_BASE_NUM_HIDDEN_LAYERS
    assert default_config["ipus_per_replica"] == len(default_config["layers_per_ipu"]) == 4
    assert default_config["inference_ipus_per_replica"] == 4
    assert default_config["replication_factor"] == 1


def test_default_config_values_are_what_vit_base_needs_to_fit(default_config):
    assert default_config["matmul_proportion"] == 0.3
    assert default_config["recompute_checkpoint_every_layer"] is True
    assert default_config["optimizer_state_offchip"] is True
    # As Graphcore/vit-base-ipu: a no-op with one replica; with --n_ipu 16, the replicas share the AdamW state.
    assert default_config["replicated_tensor_sharding"] is True
    assert default_config["gradient_accumulation_steps"] == 128
    # IPUConfig's validators: these counts must be integers >= 1, and only one way to serialise each layer.
    for key in ("replication_factor", "gradient_accumulation_steps", "device_iterations", "inference_device_iterations",
                "embedding_serialization_factor", "projection_serialization_factor"):
        assert isinstance(default_config[key], int) and default_config[key] >= 1, key
    assert "serialized_embedding_splits_per_ipu" not in default_config
    assert default_config["output_mode"] in {"all", "sum", "final", "default"}


def test_optimum_graphcore_loads_the_default_config():
    if importlib.util.find_spec("optimum") is None or importlib.util.find_spec("optimum.graphcore") is None:
        pytest.skip("optimum-graphcore is not installed here: it has its own environment (make ipu-env; make test-ipu)")
    try:
        import optimum.graphcore  # noqa: F401
    except ImportError as error:
        pytest.skip(f"optimum-graphcore is installed but cannot be imported here: {error}")
    ipu_config = ipu.load_ipu_config(str(ipu.DEFAULT_IPU_CONFIG))
    assert ipu_config.layers_per_ipu == [3, 3, 3, 3]
    assert ipu_config.gradient_accumulation_steps == 128


def test_without_an_ipu_config_the_recipe_uses_transformers_trainer():
    from transformers import Trainer, TrainingArguments

    trainer_class, arguments_class = ipu.trainer_classes(None)
    assert issubclass(trainer_class, Trainer) and arguments_class is TrainingArguments


def test_the_ipu_trainer_is_a_subclass_of_optimum_graphcores():
    class IPUTrainer:  # stands in for optimum.graphcore.IPUTrainer, which needs the Poplar SDK
        pass

    trainer_class = ipu.ipu_trainer_class(IPUTrainer)
    assert issubclass(trainer_class, IPUTrainer) and ipu.ipu_trainer_class(IPUTrainer) is trainer_class


@pytest.fixture
def optimum_graphcore_missing(monkeypatch):
    # A None entry in sys.modules makes `import optimum.graphcore` raise ImportError, as on a machine without it.
    monkeypatch.setitem(sys.modules, "optimum.graphcore", None)


def test_an_ipu_config_without_optimum_graphcore_says_what_to_install(optimum_graphcore_missing):
    with pytest.raises(ipu.IPUUnavailableError) as caught:
        ipu.trainer_classes("Graphcore/vit-base-ipu")
    message = str(caught.value)
    assert "Graphcore/vit-base-ipu" in message
    assert "optimum-graphcore==0.7.1" in message and "poptorch" in message and "Poplar SDK" in message
    assert isinstance(caught.value, ImportError)
    with pytest.raises(ipu.IPUUnavailableError):
        ipu.load_ipu_config("Graphcore/vit-base-ipu")


def test_by_default_the_projects_config_is_written(tmp_path):
    written = ipu.write_ipu_config(tmp_path / "out", None)
    assert written == tmp_path / "out" / "ipu_config.json"
    assert written.read_bytes() == ipu.DEFAULT_IPU_CONFIG.read_bytes()
    assert [p.name for p in written.parent.iterdir()] == ["ipu_config.json"]  # no temporary file left behind


def test_a_local_config_that_was_used_is_copied(tmp_path):
    used = {"layers_per_ipu": [1, 3, 4, 4], "matmul_proportion": [0.2, 0.3, 0.3, 0.3], "ipus_per_replica": 4}
    folder = tmp_path / "my-ipu-config"
    folder.mkdir()
    (folder / "ipu_config.json").write_text(json.dumps(used))
    for name in (str(folder), str(folder / "ipu_config.json")):
        written = ipu.write_ipu_config(tmp_path / "out", name)
        assert json.loads(written.read_text()) == used


def test_a_hub_config_is_fetched_with_huggingface_hub(tmp_path, monkeypatch):
    served = tmp_path / "hub-cache" / "ipu_config.json"
    served.parent.mkdir()
    served.write_text(json.dumps({"layers_per_ipu": [0, 4, 4, 4]}))
    requests = []

    def fake_download(repo_id, filename, **kwargs):
        requests.append((repo_id, filename))
        return str(served)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    written = ipu.write_ipu_config(tmp_path / "out", "Graphcore/vit-base-ipu")
    assert requests == [("Graphcore/vit-base-ipu", "ipu_config.json")]
    assert json.loads(written.read_text()) == {"layers_per_ipu": [0, 4, 4, 4]}


def test_an_unreachable_hub_config_is_a_clear_error_and_writes_nothing(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(repo_id, filename, **kwargs):
        raise LocalEntryNotFoundError("offline and not in the cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(ipu.IPUConfigNotFoundError, match="someone/no-such-ipu-config"):
        ipu.write_ipu_config(tmp_path / "out", "someone/no-such-ipu-config")
    assert not (tmp_path / "out" / "ipu_config.json").exists()


def test_a_missing_or_broken_local_config_names_the_file(tmp_path):
    with pytest.raises(ipu.IPUConfigNotFoundError, match="missing.json"):
        ipu.write_ipu_config(tmp_path / "out", str(tmp_path / "missing.json"))
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        ipu.write_ipu_config(tmp_path / "out", str(broken))
    assert not (tmp_path / "out" / "ipu_config.json").exists()
