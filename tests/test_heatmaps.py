"""training/heatmaps.py: the one-image ``explain`` and each heatmap method, checked against its paper's formula."""

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    AutoModelForImageClassification,
    ConvNextImageProcessor,
    DeiTConfig,
    DeiTForImageClassification,
    ResNetConfig,
    SwinConfig,
    SwinForImageClassification,
    ViTConfig,
    ViTImageProcessor,
    pipeline,
)

from nih_chestxray14.labels import LABELS
from training.heatmaps import (
    DEFAULT_METHODS,
    METHODS,
    Explanation,
    class_heatmaps,
    explain,
    heatmap_in_frame,
    input_window,
    resolve_method,
)
from training.model import label_settings


def tiny_vit():
    config = ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
                       image_size=32, patch_size=8, **label_settings())
    torch.manual_seed(0)
    return AutoModelForImageClassification.from_config(config).eval()


def tiny_resnet():
    config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], **label_settings())
    torch.manual_seed(0)
    return AutoModelForImageClassification.from_config(config).eval()


def xray(width=50, height=40, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width), dtype=np.uint8)
    return Image.fromarray(pixels, mode="L")


@pytest.fixture(scope="module")
def vit():
    return tiny_vit()


@pytest.fixture(scope="module")
def processor():
    return ViTImageProcessor(size={"height": 32, "width": 32})


def test_explain_gives_the_pipelines_probabilities_and_a_heatmap_per_finding_at_the_images_size(vit, processor):
    image = xray()
    explanation = explain(vit, processor, image)
    assert isinstance(explanation, Explanation)
    assert list(explanation.probabilities) == list(LABELS)
    classifier = pipeline("image-classification", model=vit, image_processor=processor, function_to_apply="sigmoid",
                          top_k=len(LABELS))
    scores = {row["label"]: row["score"] for row in classifier(image)}
    for name in LABELS:
        assert explanation.probabilities[name] == pytest.approx(scores[name], abs=1e-5)
    assert list(explanation.heatmaps) == list(LABELS)
    for heatmap in explanation.heatmaps.values():
        assert heatmap.dtype == np.float32 and heatmap.shape == (40, 50)
        assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0 and heatmap.max() > 0.5


@pytest.mark.parametrize("method", METHODS)
def test_explain_computes_only_the_findings_asked(vit, processor, method):
    explanation = explain(vit, processor, xray(), method=method, findings=["Effusion", "Mass"])
    assert list(explanation.heatmaps) == ["Effusion", "Mass"]
    assert len(explanation.probabilities) == len(LABELS)
    if method == "attention_rollout":  # rollout does not depend on the finding
        np.testing.assert_array_equal(explanation.heatmaps["Effusion"], explanation.heatmaps["Mass"])
    else:
        assert not np.allclose(explanation.heatmaps["Effusion"], explanation.heatmaps["Mass"])


def test_bad_requests_are_refused_with_the_choices(vit, processor):
    with pytest.raises(ValueError, match="not labels of the model.*Atelectasis"):
        explain(vit, processor, xray(), findings=["Effusions"])
    with pytest.raises(ValueError, match="one of attention_rollout"):
        explain(vit, processor, xray(), method="saliency")
    with pytest.raises(ValueError, match="resnet has not: use 'gradcam'"):
        resolve_method(tiny_resnet(), "attention_rollout")


def test_auto_is_the_measured_default_of_the_models_kind(vit):
    assert resolve_method(vit) == DEFAULT_METHODS["vit"] == "gradient_rollout"
    assert resolve_method(tiny_resnet()) == DEFAULT_METHODS["other"] == "gradcam"


def test_heatmaps_leave_the_models_mode_and_gradients_alone(processor):
    model = tiny_vit().train()
    explain(model, processor, xray(), method="gradient_rollout", findings=["Mass"])
    assert model.training
    assert all(parameter.grad is None for parameter in model.parameters())


def attentions_and_gradients(model, pixel_values, label):
    model.set_attn_implementation("eager")
    outputs = model(pixel_values=pixel_values, output_attentions=True)
    gradients = torch.autograd.grad(outputs.logits[0, label], outputs.attentions)
    return [a[0].detach().numpy().astype(np.float64) for a in outputs.attentions], \
        [g[0].numpy().astype(np.float64) for g in gradients]


def scaled(grid):
    return (grid - grid.min()) / (grid.max() - grid.min())


def upsampled(grid, size):
    tensor = torch.as_tensor(grid, dtype=torch.float32)[None, None]
    return torch.nn.functional.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def test_attention_rollout_is_abnar_and_zuidemas_product_of_residual_mixed_attention(vit):
    pixel_values = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    attentions, _ = attentions_and_gradients(vit, pixel_values, 0)
    rollout = np.eye(17)
    for attention in attentions:  # from the input up: A_l ... A_1, with A = 0.5 W + 0.5 I, rows normalised
        mixed = 0.5 * attention.mean(axis=0) + 0.5 * np.eye(17)
        rollout = (mixed / mixed.sum(axis=1, keepdims=True)) @ rollout
    expected = upsampled(scaled(rollout[0, 1:].reshape(4, 4)), (32, 32))
    result = class_heatmaps(vit, pixel_values, [[3]], "attention_rollout")
    np.testing.assert_allclose(result.heatmaps[0][0], expected, atol=1e-5)


def test_gradient_rollout_is_chefers_relevance_recurrence(vit):
    pixel_values = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    label = LABELS.index("Effusion")
    attentions, gradients = attentions_and_gradients(vit, pixel_values, label)
    relevance = np.eye(17)
    for attention, gradient in zip(attentions, gradients):  # R <- R + mean_h((grad * A)^+) R, from R = I
        relevance = relevance + np.clip(gradient * attention, 0, None).mean(axis=0) @ relevance
    expected = upsampled(scaled(relevance[0, 1:].reshape(4, 4)), (32, 32))
    result = class_heatmaps(vit, pixel_values, [[label]], "gradient_rollout")
    np.testing.assert_allclose(result.heatmaps[0][0], expected, atol=1e-5)


def test_gradcam_of_a_cnn_is_the_class_activation_map_of_its_linear_head():
    # With global average pooling and one linear layer, Grad-CAM's channel weights are the head's weights / (h*w),
    # so the map is Zhou et al.'s CAM: sum over channels of weight * feature map, cut at 0.
    model = tiny_resnet()
    pixel_values = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        features = model(pixel_values=pixel_values, output_hidden_states=True).hidden_states[-1].numpy()
    weights = model.classifier[-1].weight.detach().numpy()
    targets = [[0, 5], [9]]
    result = class_heatmaps(model, pixel_values, targets, "gradcam")
    for image, labels in enumerate(targets):
        for position, label in enumerate(labels):
            cam = np.clip(np.einsum("c,chw->hw", weights[label], features[image]), 0, None)
            np.testing.assert_allclose(result.heatmaps[image][position], upsampled(scaled(cam), (64, 64)), atol=1e-5)


def test_a_batch_mixes_images_with_several_findings_and_with_none(vit):
    pixel_values = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    targets = [[1, 2, 3], [], [7]]
    result = class_heatmaps(vit, pixel_values, targets, "gradcam", chunk_size=2)
    assert [maps.shape for maps in result.heatmaps] == [(3, 32, 32), (0, 32, 32), (1, 32, 32)]
    with torch.no_grad():
        expected = torch.sigmoid(vit(pixel_values=pixel_values).logits).numpy()
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-5)
    alone = class_heatmaps(vit, pixel_values[2:], [[7]], "gradcam")
    np.testing.assert_allclose(result.heatmaps[2], alone.heatmaps[0], atol=1e-5)  # rows don't leak into each other


def test_a_distilled_vit_drops_both_special_tokens():
    config = DeiTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                        image_size=32, patch_size=8, **label_settings())
    model = DeiTForImageClassification(config).eval()
    for method in METHODS:
        maps = class_heatmaps(model, torch.randn(1, 3, 32, 32), [[0]], method).heatmaps[0]
        assert maps.shape == (1, 32, 32) and np.isfinite(maps).all()


def test_windowed_attention_is_refused_for_rollout_but_gradcam_works():
    config = SwinConfig(image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4,
                        **label_settings())
    model = SwinForImageClassification(config).eval()
    with pytest.raises(ValueError, match="swin has not: use 'gradcam'"):
        class_heatmaps(model, torch.randn(1, 3, 32, 32), [[0]], "attention_rollout")
    assert resolve_method(model) == "gradcam"
    maps = class_heatmaps(model, torch.randn(1, 3, 32, 32), [[0]], "auto").heatmaps[0]
    assert maps.shape == (1, 32, 32) and 0.5 < maps.max() <= 1.0


def square_round_trip(processor, width, height, square):
    """Push an image with one white square through ``processor``, then map the white input pixels back."""
    pixels = np.zeros((height, width), dtype=np.uint8)
    left, top, side = square
    pixels[top:top + side, left:left + side] = 255
    inputs = processor(images=Image.fromarray(pixels).convert("RGB"), return_tensors="pt")["pixel_values"][0, 0]
    white = (inputs > inputs.min() + 0.5 * (inputs.max() - inputs.min())).float().numpy()
    mapped = heatmap_in_frame(white, input_window(processor, width, height), (width, height)) > 0.5
    truth = pixels > 0
    return (mapped & truth).sum() / (mapped | truth).sum()


@pytest.mark.parametrize("processor", [
    ViTImageProcessor(size={"height": 64, "width": 64}),  # stretched to a square
    ConvNextImageProcessor(size={"shortest_edge": 64}, crop_pct=0.875),  # resized to 73, centre 64 cropped
    ConvNextImageProcessor(size={"shortest_edge": 384}),  # warped at 384 and above
    ViTImageProcessor(size={"shortest_edge": 80}, do_center_crop=True, crop_size={"height": 64, "width": 64}),
], ids=["height-width", "convnext-crop-pct", "convnext-warp", "shortest-edge-centre-crop"])
def test_heatmaps_map_back_onto_the_part_of_the_image_the_processor_kept(processor):
    assert square_round_trip(processor, 240, 160, (150, 60, 40)) > 0.8


def test_heatmap_in_frame_is_exact_on_its_own_grid_and_zero_outside_the_window():
    heatmap = np.random.default_rng(5).random((8, 6)).astype(np.float32)
    np.testing.assert_allclose(heatmap_in_frame(heatmap, (0, 0, 6, 8), (6, 8)), heatmap, atol=1e-6)
    framed = heatmap_in_frame(heatmap, (4, 0, 10, 8), (14, 8))  # the input covers columns 4-9 of the frame
    np.testing.assert_allclose(framed[:, 4:10], heatmap, atol=1e-6)
    assert not framed[:, :4].any() and not framed[:, 10:].any()
    with pytest.raises(ValueError, match="empty"):
        heatmap_in_frame(heatmap, (4, 0, 4, 8), (14, 8))


def test_the_module_imports_only_what_a_space_has():
    """Inference code ships a copy of training/heatmaps.py: it may import NumPy, torch, PIL, transformers and the
    standard library, and nothing of this project."""
    import ast
    import sys
    from pathlib import Path

    import training.heatmaps

    tree = ast.parse(Path(training.heatmaps.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    third_party = imported - set(sys.stdlib_module_names) - {"__future__"}
    assert third_party <= {"numpy", "torch", "PIL", "transformers"}, third_party


class TimmProcessor:
    """What a timm checkpoint's processor (transformers' ``TimmWrapperImageProcessor``) exposes: timm's data config."""

    def __init__(self, **data_config):
        self.data_config = {"input_size": (3, 224, 224), "crop_pct": 0.875, **data_config}


def test_the_window_of_timms_centre_crop_and_squash():
    # centre: shortest edge to floor(224 / 0.875) = 256, the other edge int(256 * 1024 / 512) = 512; crop 224
    left, top, right, bottom = input_window(TimmProcessor(crop_mode="center"), 512, 1024)
    assert (left, right) == pytest.approx((16 * 2, 240 * 2)) and (top, bottom) == pytest.approx((144 * 2, 368 * 2))
    # squash: both edges to 256, then the same crop
    window = input_window(TimmProcessor(crop_mode="squash"), 512, 1024)
    assert window == pytest.approx((16 * 2, 16 * 4, 240 * 2, 240 * 4))
    with pytest.raises(ValueError, match="crop_mode 'border'"):
        input_window(TimmProcessor(crop_mode="border"), 512, 1024)
