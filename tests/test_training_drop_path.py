"""Drop path: active in training, off in evaluation, for each kind of checkpoint the recipe starts from."""

import json

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from training.arguments import ModelArguments
from training.drop_path import DropPath, add_drop_path
from training.model import build_config, build_image_processor, build_model, image_geometry

TINY_VIT = "hidden_size=16,num_hidden_layers=4,num_attention_heads=2,intermediate_size=32,image_size=16,patch_size=8"


def vit(drop_path_rate=None, overrides=TINY_VIT, model_type="vit"):
    model_args = ModelArguments(model_type=model_type, config_overrides=overrides, drop_path_rate=drop_path_rate)
    torch.manual_seed(0)
    return build_model(model_args, build_config(model_args))


def logits(model, pixels, seed):
    torch.manual_seed(seed)
    with torch.no_grad():
        return model(pixel_values=pixels).logits


def test_drop_path_is_active_in_training_and_off_in_evaluation():
    plain, dropping = vit(), vit(drop_path_rate=0.5)
    pixels = torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    plain.eval(), dropping.eval()
    assert torch.equal(logits(plain, pixels, 0), logits(dropping, pixels, 0))  # same weights, nothing dropped
    dropping.train()
    first, second = logits(dropping, pixels, 0), logits(dropping, pixels, 1)
    assert not torch.allclose(first, second)  # different images' branches dropped on each pass
    plain.train()  # the config's dropout is 0: without drop path, training mode changes nothing
    assert torch.equal(logits(plain, pixels, 0), logits(plain, pixels, 1))


def test_rates_grow_linearly_from_the_first_block_to_the_last():
    model = vit(drop_path_rate=0.3)
    rates = [block.dropout.rate for block in model.vit.layers]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_a_dropped_branch_leaves_the_block_input_unchanged():
    """What the swap relies on: transformers' ViT block applies ``layer.dropout`` to each whole residual branch just
    before the residual sum. If a release moves it, this fails."""

    class DropAll(nn.Module):
        def forward(self, branch):
            return torch.zeros_like(branch)

    from transformers import DeiTConfig, DeiTForImageClassification

    deit = DeiTForImageClassification(DeiTConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                                 intermediate_size=32, image_size=16, patch_size=8))
    assert add_drop_path(deit, 0.1) == 2
    for block in (vit().vit.layers[0], deit.deit.layers[0]):
        block.dropout = DropAll()
        hidden = torch.randn(2, 5, 16)
        assert torch.equal(block(hidden), hidden)


def test_drop_path_drops_whole_images_and_keeps_the_expectation():
    drop = DropPath(0.5, nn.Dropout(0.0)).train()
    torch.manual_seed(0)
    out = drop(torch.ones(4000, 3, 2))
    per_image = out.flatten(1)
    assert set(per_image.unique().tolist()) == {0.0, 2.0}
    assert (per_image == per_image[:, :1]).all()  # one draw per image
    assert per_image.mean().item() == pytest.approx(1.0, abs=0.05)
    assert torch.equal(drop.eval()(torch.ones(3, 2)), torch.ones(3, 2))


def test_the_published_model_is_a_plain_vit(tmp_path):
    model = vit(drop_path_rate=0.2)
    model.save_pretrained(tmp_path)
    reloaded = build_model(ModelArguments(model_name_or_path=str(tmp_path)), build_config(
        ModelArguments(model_name_or_path=str(tmp_path))))
    assert set(reloaded.state_dict()) == set(model.state_dict())
    assert not any(isinstance(module, DropPath) for module in reloaded.modules())


def test_dinov2_gets_its_own_drop_path_setting():
    model = vit(drop_path_rate=0.2, model_type="dinov2",
                overrides="hidden_size=16,num_hidden_layers=2,num_attention_heads=2,mlp_ratio=2,image_size=28,"
                          "patch_size=14")
    assert model.config.drop_path_rate == 0.2
    assert not any(isinstance(module, DropPath) for module in model.modules())
    pixels = torch.randn(4, 3, 28, 28)
    model.train()
    assert not torch.allclose(logits(model, pixels, 0), logits(model, pixels, 1))
    model.eval()
    assert torch.equal(logits(model, pixels, 0), logits(model, pixels, 1))


def test_a_model_without_blocks_the_recipe_knows_is_refused_by_name():
    model_args = ModelArguments(model_type="resnet", config_overrides="embedding_size=8", drop_path_rate=0.1,
                                attn_implementation="eager")
    with pytest.raises(ValueError, match="--drop_path_rate"):
        build_model(model_args, build_config(model_args))
    with pytest.raises(ValueError, match="--drop_path_rate"):
        add_drop_path(nn.Linear(2, 2), 0.1)


def write_timm_checkpoint(folder):
    """A checkpoint in timm's Hub format (as ``1aurent/vit_base_patch16_224.medmae_CXR_mae``): timm's config.json and
    model.safetensors under timm's own names. Tiny and random."""
    folder.mkdir()
    config = {
        "architecture": "vit_base_patch16_224", "num_classes": 0, "num_features": 16, "global_pool": "avg",
        "model_args": {"embed_dim": 16, "depth": 2, "num_heads": 2, "img_size": 32},
        "pretrained_cfg": {"input_size": [3, 32, 32], "interpolation": "bicubic", "crop_pct": 0.875,
                           "crop_mode": "center", "mean": [0.5056] * 3, "std": [0.252] * 3, "num_classes": 0},
    }
    (folder / "config.json").write_text(json.dumps(config))
    save_file({"cls_token": torch.zeros(1, 1, 16)}, str(folder / "model.safetensors"))
    return folder


def test_a_timm_checkpoint_gets_drop_path_through_timms_own_setting(tmp_path):
    folder = write_timm_checkpoint(tmp_path / "timm-vit")
    config = build_config(ModelArguments(model_name_or_path=str(folder), drop_path_rate=0.2))
    assert config.model_type == "timm_wrapper" and config.num_labels == 14
    assert config.model_args == {"embed_dim": 16, "depth": 2, "num_heads": 2, "img_size": 32, "drop_path_rate": 0.2}


def test_a_timm_checkpoint_without_timm_says_what_to_install(tmp_path):
    try:
        import timm  # noqa: F401
        pytest.skip("timm is installed here; the timm path is tested by training it")
    except Exception:  # noqa: BLE001 - timm missing, or present without a working torchvision
        pass
    folder = write_timm_checkpoint(tmp_path / "timm-vit")
    model_args = ModelArguments(model_name_or_path=str(folder))
    with pytest.raises(ValueError, match="pip install timm"):
        build_model(model_args, build_config(model_args))


def test_a_timm_processors_data_config_gives_the_geometry():
    class TimmProcessor:  # what TimmWrapperImageProcessor exposes (it needs timm itself to be built)
        data_config = {"input_size": (3, 224, 224), "interpolation": "bicubic", "crop_pct": 0.875,
                       "mean": (0.5056,) * 3, "std": (0.252,) * 3}

    geometry = image_geometry(TimmProcessor())
    assert (geometry.resize_size, geometry.crop_size) == (256, 224)
    assert geometry.image_mean == (0.5056,) * 3 and geometry.interpolation == "bicubic"


def test_a_transformers_processor_still_gives_its_own_geometry():
    model_args = ModelArguments(model_type="vit", config_overrides=TINY_VIT)
    geometry = image_geometry(build_image_processor(model_args, build_config(model_args)))
    assert (geometry.resize_size, geometry.crop_size) == (16, 16)


def test_a_dinov2_backbone_checkpoint_like_rad_dino_fine_tunes_with_both_options(tmp_path):
    """microsoft/rad-dino's layout, tiny and random: a DINOv2 backbone (no head) and a Bit image processor."""
    from transformers import Dinov2Config, Dinov2Model
    from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

    from training.layer_decay import layer_decay_groups

    folder = tmp_path / "rad-dino-stand-in"
    torch.manual_seed(0)
    Dinov2Model(Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, image_size=28,
                             patch_size=14)).save_pretrained(folder)
    BitImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 28, "width": 28}).save_pretrained(folder)
    model_args = ModelArguments(model_name_or_path=str(folder), drop_path_rate=0.1, layer_decay=0.5)
    config = build_config(model_args)
    model = build_model(model_args, config)
    assert type(model).__name__ == "Dinov2ForImageClassification" and model.config.drop_path_rate == 0.1
    geometry = image_geometry(build_image_processor(model_args, config))
    assert (geometry.resize_size, geometry.crop_size) == (32, 28)
    groups = layer_decay_groups(model, 0.5, 0.05, 1e-3)
    assert sorted({group["lr_scale"] for group in groups}) == [0.125, 0.25, 0.5, 1.0]
    loss = model(pixel_values=torch.randn(2, 3, 28, 28), labels=torch.zeros(2, 14)).loss
    loss.backward()
    assert torch.isfinite(loss)
