"""Starting from a checkpoint in timm's format, as the Medical MAE encoders on the Hub are published.

The stand-in is a tiny timm ViT saved by timm itself (``timm.models.save_for_hf``: timm's ``config.json`` with
``architecture``, ``model_args`` and ``pretrained_cfg``, and ``model.safetensors`` under timm's parameter names), with
the Medical MAE's mean and std. These tests run in their own environment, with timm and torchvision (``make
test-timm``).
"""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nih_chestxray14.labels import LABELS
from training.arguments import ModelArguments
from training.layer_decay import layer_decay_groups
from training.model import build_config, build_image_processor, build_model, image_geometry

MEDMAE_MEAN, MEDMAE_STD = 0.5056, 0.252  # Xiao et al. (WACV 2023), the Medical MAE's chest X-ray statistics
DEPTH = 3


@pytest.fixture(scope="module")
def timm():
    import timm

    return timm


@pytest.fixture(scope="module")
def timm_checkpoint(timm, tmp_path_factory):
    """A headless timm ViT-B/16-style encoder, 3 blocks of width 16 at 32 px, written as timm publishes one."""
    from timm.models import save_for_hf

    model_args = {"embed_dim": 16, "depth": DEPTH, "num_heads": 2, "img_size": 32, "patch_size": 8}
    torch.manual_seed(0)
    encoder = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, **model_args)
    folder = tmp_path_factory.mktemp("timm") / "medmae-like"
    data_config = {"input_size": (3, 32, 32), "interpolation": "bicubic", "crop_pct": 0.875, "crop_mode": "center",
                   "mean": (MEDMAE_MEAN,) * 3, "std": (MEDMAE_STD,) * 3}
    save_for_hf(encoder, str(folder), model_args=model_args, safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config["pretrained_cfg"].update(data_config)  # the checkpoint's own normalisation, as the Hub copies have
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def load(folder, **options):
    model_args = ModelArguments(model_name_or_path=str(folder), **options)
    config = build_config(model_args)
    return build_model(model_args, config), build_image_processor(model_args, config)


def test_every_encoder_weight_is_loaded_and_the_head_is_a_new_14_way_one(timm_checkpoint):
    model, _ = load(timm_checkpoint)
    assert type(model).__name__ == "TimmWrapperForImageClassification"
    assert model.config.num_labels == 14 and model.config.id2label == dict(enumerate(LABELS))
    saved = load_file(str(timm_checkpoint / "model.safetensors"))
    loaded = model.timm_model.state_dict()
    assert saved.keys() <= loaded.keys()
    for name, tensor in saved.items():
        assert torch.equal(loaded[name], tensor), name
    assert loaded["head.weight"].shape == (14, 16)
    assert model(pixel_values=torch.randn(2, 3, 32, 32)).logits.shape == (2, 14)


def test_timms_drop_path_grows_with_depth_and_is_off_in_evaluation(timm_checkpoint):
    model, _ = load(timm_checkpoint, drop_path_rate=0.2)
    rates = [float(getattr(block.drop_path1, "drop_prob", 0.0)) for block in model.timm_model.blocks]
    assert rates == pytest.approx(np.linspace(0.0, 0.2, DEPTH))
    pixels = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))

    def logits(seed):
        torch.manual_seed(seed)
        with torch.no_grad():
            return model(pixel_values=pixels).logits

    model.train()
    assert not torch.allclose(logits(0), logits(1))
    model.eval()
    assert torch.equal(logits(0), logits(1))


def test_layer_decay_reads_timms_block_names(timm_checkpoint):
    model, _ = load(timm_checkpoint)
    scale_of = {}
    for group in layer_decay_groups(model, layer_decay=0.5, weight_decay=0.05, learning_rate=1e-3):
        for parameter in group["params"]:
            scale_of[id(parameter)] = group["lr_scale"]
    named = dict(model.named_parameters())
    # L = 3 blocks: embeddings 0.5^4, block i 0.5^(3 - i), what follows the blocks (norm, head) 1
    assert scale_of[id(named["timm_model.cls_token"])] == 0.5**4
    assert scale_of[id(named["timm_model.patch_embed.proj.weight"])] == 0.5**4
    for block in range(DEPTH):
        assert scale_of[id(named[f"timm_model.blocks.{block}.attn.qkv.weight"])] == 0.5 ** (DEPTH - block)
    assert scale_of[id(named["timm_model.norm.weight"])] == 1.0
    assert scale_of[id(named["timm_model.head.weight"])] == 1.0


def test_grad_cam_explains_each_finding_of_a_timm_model(timm_checkpoint):
    from PIL import Image

    from training.heatmaps import explain, resolve_method

    model, processor = load(timm_checkpoint)
    assert resolve_method(model) == "gradcam"  # timm's attention returns no weights to roll out
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 40), dtype=np.uint8))
    explanation = explain(model, processor, image, findings=["Effusion", "Mass"])
    effusion, mass = explanation.heatmaps["Effusion"], explanation.heatmaps["Mass"]
    assert effusion.shape == mass.shape == (48, 40)
    assert 0.0 <= effusion.min() and 0.5 < effusion.max() <= 1.0  # scaled to [0, 1] on the input, then resampled
    assert not np.allclose(effusion, mass)  # each finding's own gradient


@pytest.mark.parametrize("size", [(40, 48), (48, 40), (32, 32)])
def test_the_heatmap_window_is_the_part_of_the_image_timms_transform_keeps(timm_checkpoint, size):
    from torchvision.transforms import CenterCrop, InterpolationMode, Resize

    from training.heatmaps import input_window

    _, processor = load(timm_checkpoint)
    width, height = size
    # each pixel holds its own coordinates; timm's resize and crop (nearest, to keep them) show where the crop lies
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    kept = CenterCrop(32)(Resize(36, interpolation=InterpolationMode.NEAREST)(torch.stack([xs, ys])))
    left, top, right, bottom = input_window(processor, width, height)
    assert left == pytest.approx(kept[0].min().item(), abs=1.5) and top == pytest.approx(kept[1].min().item(), abs=1.5)
    assert right == pytest.approx(kept[0].max().item() + 1, abs=1.5)
    assert bottom == pytest.approx(kept[1].max().item() + 1, abs=1.5)


def test_the_checkpoints_own_normalisation_and_crop_are_used(timm_checkpoint):
    _, processor = load(timm_checkpoint)
    geometry = image_geometry(processor)
    assert geometry.image_mean == pytest.approx((MEDMAE_MEAN,) * 3)
    assert geometry.image_std == pytest.approx((MEDMAE_STD,) * 3)
    assert (geometry.resize_size, geometry.crop_size) == (36, 32)  # timm: resize floor(32 / 0.875), crop 32


@pytest.mark.slow
def test_the_recipe_fine_tunes_a_timm_checkpoint_with_every_fine_tuning_option(timm_checkpoint, tmp_path):
    from transformers import AutoModelForImageClassification

    from training.run import main

    output_dir = tmp_path / "out"
    results = main([
        "--model_name_or_path", str(timm_checkpoint),
        "--layer_decay", "0.65", "--drop_path_rate", "0.1", "--ema_decay", "0.9",
        "--data_dir", str(tmp_path / "release"), "--make_sample_release", "--sample_num_patients", "60",
        "--sample_image_size", "32", "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(output_dir),
        "--use_cpu", "--per_device_train_batch_size", "16", "--per_device_eval_batch_size", "32",
        "--learning_rate", "1e-3", "--max_steps", "12", "--eval_strategy", "steps", "--eval_steps", "6",
        "--save_strategy", "steps", "--save_steps", "6", "--logging_steps", "3", "--seed", "0",
        "--do_train", "--do_eval", "--do_predict",
    ])
    assert 0.0 <= results["eval_roc_auc"] <= 1.0 and 0.0 <= results["test_roc_auc"] <= 1.0
    config = json.loads((output_dir / "config.json").read_text())
    assert config["model_type"] == "timm_wrapper" and config["architecture"] == "vit_base_patch16_224"
    assert config["problem_type"] == "multi_label_classification" and config["label_names"] == list(LABELS)
    assert "num_classes" not in config["model_args"]
    assert (output_dir / "evaluation_test.json").is_file()
    card = (output_dir / "README.md").read_text()
    assert "Where the model looks" in card  # heatmaps scored against the boxes: Grad-CAM through timm's blocks
    # the published folder loads as it is, from safetensors, and gives the recipe's own test scores
    reloaded = AutoModelForImageClassification.from_pretrained(output_dir, use_safetensors=True).eval()
    assert reloaded.config.id2label[0] == LABELS[0]
    with torch.no_grad():
        assert reloaded(pixel_values=torch.zeros(1, 3, 32, 32)).logits.shape == (1, 14)


def test_torchvisions_own_transforms_work_here():
    # what timm's processors use; if torchvision could not import, conftest.py would have raised
    from torchvision.transforms import CenterCrop

    assert CenterCrop(2)(torch.ones(1, 4, 4)).shape == (1, 2, 2)
