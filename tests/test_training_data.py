"""The recipe's image transforms and collator: picklable, right shapes and dtype, normalised with the model's numbers.

The transforms hand on 8-bit grey pixels and a plan; the collator does the float work for the batch.
"""

import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from nih_chestxray14.labels import NUM_LABELS
from training.data import (
    AugmentationConfig,
    ImageGeometry,
    XrayEvalTransform,
    PixelPlan,
    XrayTrainTransform,
    collate_multilabel,
    to_grayscale,
)

GEOMETRY = ImageGeometry(resize_size=32, crop_size=32, image_mean=(0.4, 0.5, 0.6), image_std=(0.2, 0.25, 0.5))


def xray(size=(80, 64), seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0]), dtype=np.uint8)
    return Image.fromarray(pixels, mode="L")


def batch(images):
    return {"image": images, "labels": [[index % 2] * NUM_LABELS for index in range(len(images))]}


def examples(output):
    """The per-example dicts a DataLoader hands the collator, from a transform's batch output."""
    return [dict(zip(output, values)) for values in zip(*output.values())]


@pytest.mark.parametrize("transform", [XrayEvalTransform(GEOMETRY), XrayTrainTransform(GEOMETRY)])
def test_transform_hands_on_8_bit_grey_pixels_and_the_collator_gives_the_model_normalised_float_rgb(transform):
    images = [xray(), xray((64, 64), seed=1)]
    output = transform(batch(images))
    assert all(pixels.dtype == torch.uint8 and pixels.ndim == 3 and pixels.shape[0] == 1
               for pixels in output["pixel_values"])
    assert all(isinstance(plan, PixelPlan) and plan.size == (32, 32) for plan in output["pixel_plan"])
    assert output["labels"] == batch(images)["labels"]
    collated = collate_multilabel(examples(output))
    assert collated["pixel_values"].shape == (2, 3, 32, 32)
    assert collated["pixel_values"].dtype == torch.float32 and collated["pixel_values"].is_contiguous()
    assert collated["labels"].shape == (2, NUM_LABELS) and collated["labels"].dtype == torch.float32


def test_eval_transform_normalises_each_channel_with_the_processor_mean_and_std():
    grey = Image.new("L", (50, 40), color=153)  # 153 / 255 = 0.6
    pixels = XrayEvalTransform(GEOMETRY).transform_image(grey)
    expected = [(0.6 - mean) / std for mean, std in zip(GEOMETRY.image_mean, GEOMETRY.image_std)]
    np.testing.assert_allclose(pixels.mean(dim=(1, 2)).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(pixels.std(dim=(1, 2)).numpy(), 0, atol=1e-5)


def test_eval_transform_resizes_the_shorter_side_then_crops_the_centre():
    # A wide image whose left and right thirds are black and centre white: a centre crop keeps only white.
    pixels = np.zeros((60, 180), dtype=np.uint8)
    pixels[:, 60:120] = 255
    geometry = ImageGeometry(resize_size=32, crop_size=32, image_mean=(0, 0, 0), image_std=(1, 1, 1))
    square = XrayEvalTransform(geometry).transform_image(Image.fromarray(pixels))
    assert square.shape == (3, 32, 32)
    assert float(square[:, :, 2:-2].min()) > 0.95


def test_eval_transform_is_deterministic_and_train_transform_is_random():
    image = xray()
    evaluation, training = XrayEvalTransform(GEOMETRY), XrayTrainTransform(GEOMETRY)
    assert torch.equal(evaluation.transform_image(image), evaluation.transform_image(image))
    assert not torch.equal(training.transform_image(image), training.transform_image(image))


def test_train_transform_without_augmentation_matches_the_eval_transform():
    still = AugmentationConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), rotation_degrees=0, brightness=0, contrast=0)
    image = xray((32, 32))
    np.testing.assert_allclose(
        XrayTrainTransform(GEOMETRY, still).transform_image(image).numpy(),
        XrayEvalTransform(GEOMETRY).transform_image(image).numpy(),
        atol=1e-5,
    )


def test_augmentation_never_flips_by_default():
    assert AugmentationConfig().horizontal_flip is False
    # Bright left half: with crops of the whole image and no rotation, the left stays brighter every time.
    pixels = np.zeros((32, 32), dtype=np.uint8)
    pixels[:, :16] = 200
    still = AugmentationConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), rotation_degrees=0)
    transform = XrayTrainTransform(GEOMETRY, still)
    for _ in range(20):
        out = transform.transform_image(Image.fromarray(pixels))[0]
        assert out[:, :16].mean() > out[:, 16:].mean()


@pytest.mark.parametrize("transform", [XrayEvalTransform(GEOMETRY), XrayTrainTransform(GEOMETRY, AugmentationConfig(horizontal_flip=True))])
def test_transforms_survive_a_pickle_round_trip(transform):
    restored = pickle.loads(pickle.dumps(transform))
    assert type(restored) is type(transform)
    assert repr(restored) == repr(transform)
    torch.manual_seed(0)
    expected = transform.transform_image(xray())
    torch.manual_seed(0)
    assert torch.equal(restored.transform_image(xray()), expected)


@pytest.mark.parametrize(
    "image",
    [
        Image.fromarray(np.full((20, 20, 4), (255, 255, 255, 255), dtype=np.uint8), mode="RGBA"),
        Image.fromarray(np.full((20, 20, 3), 255, dtype=np.uint8), mode="RGB"),
        Image.fromarray(np.full((20, 20), 4095, dtype=np.uint16)),  # 12-bit data in a 16-bit PNG
    ],
    ids=["RGBA", "RGB", "I;16"],
)
def test_every_image_mode_becomes_8_bit_grayscale(image):
    grey = to_grayscale(image)
    assert grey.mode == "L"
    assert np.asarray(grey).min() == 255


def test_collator_stacks_float_pixels_as_they_are_and_gives_float_labels():
    pixels = [torch.rand(3, 8, 8) for _ in range(3)]
    collated = collate_multilabel([{"pixel_values": p, "labels": [i % 2] * NUM_LABELS} for i, p in enumerate(pixels)])
    assert torch.equal(collated["pixel_values"], torch.stack(pixels))
    assert collated["labels"].dtype == torch.float32 and collated["labels"][1].tolist() == [1.0] * NUM_LABELS


def test_collated_batch_equals_each_example_finished_alone():
    # Jitter, crop and normalisation are per example even though the collator does them for the batch at once;
    # sources of different sizes share a batch.
    torch.manual_seed(3)
    output = XrayTrainTransform(GEOMETRY)(batch([xray(seed=s, size=size) for s, size in enumerate(
        [(80, 64), (64, 64), (40, 50), (33, 90), (64, 80), (70, 70)])]))
    together = collate_multilabel(examples(output))["pixel_values"]
    alone = torch.cat([collate_multilabel([example])["pixel_values"] for example in examples(output)])
    torch.testing.assert_close(together, alone, atol=1e-4, rtol=0)  # a grey level is 0.02 here
    plans = output["pixel_plan"]
    assert len({(plan.brightness, plan.contrast, plan.affine) for plan in plans}) == len(plans)


def test_brightness_and_contrast_jitter_scale_about_the_image_mean_and_clip():
    pixels = torch.tensor([[[0, 100, 200, 250]]], dtype=torch.uint8)  # (1, 1, 4)
    identity = ImageGeometry(resize_size=4, crop_size=4, image_mean=(0, 0, 0), image_std=(1, 1, 1))
    plan = PixelPlan(size=(1, 4), image_mean=identity.image_mean, image_std=identity.image_std,
                     brightness=1.2, contrast=0.5)
    finished = collate_multilabel([{"pixel_values": pixels, "pixel_plan": plan}])["pixel_values"][0]
    values = pixels.double().flatten() / 255
    expected = ((values - values.mean()) * 1.2 * 0.5 + values.mean() * 1.2).clamp(0, 1)
    for channel in finished:
        np.testing.assert_allclose(channel.flatten().numpy(), expected.numpy(), atol=1e-6)
    bright = collate_multilabel([{"pixel_values": pixels, "pixel_plan": PixelPlan(
        size=(1, 4), image_mean=(0, 0, 0), image_std=(1, 1, 1), brightness=1.9)}])["pixel_values"][0, 0]
    assert float(bright.max()) == 1.0  # clipped, as ColorJitter does


def test_crop_and_rotation_resample_like_pil_affine_inside_the_image():
    # The batch resampling follows PIL's affine convention (continuous coordinates, pixel centres at +0.5).
    smooth = xray((96, 96), seed=4).resize((24, 24), Image.Resampling.BOX).resize((96, 96), Image.Resampling.BICUBIC)
    geometry = ImageGeometry(resize_size=48, crop_size=48, image_mean=(0, 0, 0), image_std=(1, 1, 1))
    still = AugmentationConfig(brightness=0, contrast=0, rotation_degrees=10)
    torch.manual_seed(0)
    for _ in range(5):
        pixels, plan = XrayTrainTransform(geometry, still).prepare(smooth)
        ours = collate_multilabel([{"pixel_values": pixels, "pixel_plan": plan}])["pixel_values"][0, 0] * 255
        pil = np.asarray(smooth.transform((48, 48), Image.Transform.AFFINE, plan.affine,
                                          resample=Image.Resampling.BILINEAR), dtype=np.float32)
        np.testing.assert_allclose(ours.numpy()[4:-4, 4:-4], pil[4:-4, 4:-4], atol=1.01)  # PIL rounds to 8 bits


def test_collator_rejects_8_bit_pixels_without_a_plan_and_plans_that_disagree():
    pixels = torch.zeros((1, 4, 4), dtype=torch.uint8)
    with pytest.raises(ValueError, match="pixel_plan"):
        collate_multilabel([{"pixel_values": pixels}])
    plans = [PixelPlan(size=(4, 4), image_mean=(0.5,) * 3, image_std=std) for std in [(0.5,) * 3, (0.25,) * 3]]
    with pytest.raises(ValueError, match="same output size, image_mean and image_std"):
        collate_multilabel([{"pixel_values": pixels, "pixel_plan": plan} for plan in plans])


def test_examples_and_collator_cross_process_boundaries():
    # Data-loader workers pickle the transform and the collator and send back the collated batch.
    output = XrayTrainTransform(GEOMETRY)(batch([xray()]))
    restored = pickle.loads(pickle.dumps(examples(output)))
    assert restored[0]["pixel_plan"] == output["pixel_plan"][0]
    assert pickle.loads(pickle.dumps(collate_multilabel)) is collate_multilabel


def test_collator_rejects_labels_of_the_wrong_length():
    with pytest.raises(ValueError, match="length 14"):
        collate_multilabel([{"pixel_values": torch.zeros(3, 4, 4), "labels": [0, 1, 0]}])


def test_geometry_comes_from_the_image_processor():
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    vit = ImageGeometry.from_image_processor(ViTImageProcessorPil(size={"height": 224, "width": 224}))
    assert (vit.resize_size, vit.crop_size, vit.image_mean, vit.image_std) == (224, 224, (0.5,) * 3, (0.5,) * 3)

    class ConvNextStyle:  # shortest_edge + crop_pct, ImageNet statistics
        size = {"shortest_edge": 224}
        crop_pct = 0.875
        do_normalize = True
        image_mean = [0.485, 0.456, 0.406]
        image_std = [0.229, 0.224, 0.225]

    convnext = ImageGeometry.from_image_processor(ConvNextStyle())
    assert (convnext.resize_size, convnext.crop_size) == (256, 224)
    assert convnext.image_mean == (0.485, 0.456, 0.406)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"crop_scale": (0.9, 0.5)}, "crop_scale"),
        ({"rotation_degrees": 90}, "rotation_degrees"),
        ({"brightness": 1.5}, "brightness"),
    ],
)
def test_bad_augmentation_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=message):
        AugmentationConfig(**settings)
