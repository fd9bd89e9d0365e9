"""Batch-wise augmentation and normalisation (training/augment.py), and how the recipe's Trainer applies it on the
model's device: augmented in training, deterministic in evaluation, in the model's shape, dtype and normalisation.
"""

import math

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from nih_chestxray14.labels import NUM_LABELS
from training.augment import (
    AugmentAndNormalise,
    AugmentationConfig,
    AugmentOnDeviceMixin,
    ImageGeometry,
    augmentation_seed,
    draw_augmentations,
)
from training.data import collate_xrays, decode_xrays

GEOMETRY = ImageGeometry(resize_size=32, crop_size=32, image_mean=(0.4, 0.5, 0.6), image_std=(0.2, 0.25, 0.5))
IDENTITY = ImageGeometry(resize_size=32, crop_size=32, image_mean=(0, 0, 0), image_std=(1, 1, 1))
STILL = AugmentationConfig(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), rotation_degrees=0, brightness=0, contrast=0)


def batch_of(*arrays):
    """uint8 (N, 1, H, W) and (N, 2) sizes, as collate_xrays makes them, from grey (h, w) arrays."""
    batch = collate_xrays([{"pixel_values": np.asarray(array, dtype=np.uint8)} for array in arrays])
    return batch["pixel_values"], batch["image_sizes"]


def noise(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(height, width), dtype=np.uint8)


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def test_both_paths_give_the_model_normalised_float_rgb_of_its_input_size():
    pixels, sizes = batch_of(noise(64, 80), noise(64, 64, 1), noise(40, 50, 2))
    transform = AugmentAndNormalise(GEOMETRY, AugmentationConfig())
    for output in (transform.training(pixels, sizes, generator()), transform.evaluation(pixels, sizes)):
        assert output.shape == (3, 3, 32, 32) and output.dtype == torch.float32 and output.is_contiguous()
        for channel, (mean, std) in enumerate(zip(GEOMETRY.image_mean, GEOMETRY.image_std)):
            assert float(output[:, channel].min()) >= (0 - mean) / std - 1e-5
            assert float(output[:, channel].max()) <= (1 - mean) / std + 1e-5
    assert transform.evaluation(pixels, sizes, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_grey_becomes_three_channels_normalised_with_the_processor_mean_and_std():
    pixels, sizes = batch_of(np.full((40, 50), 153))  # 153 / 255 = 0.6
    for output in (AugmentAndNormalise(GEOMETRY).evaluation(pixels, sizes),
                   AugmentAndNormalise(GEOMETRY, STILL).training(pixels, sizes, generator())):
        expected = [(0.6 - mean) / std for mean, std in zip(GEOMETRY.image_mean, GEOMETRY.image_std)]
        np.testing.assert_allclose(output[0].mean(dim=(1, 2)).numpy(), expected, atol=1e-5)
        np.testing.assert_allclose(output[0].std(dim=(1, 2)).numpy(), 0, atol=1e-5)


def test_evaluation_matches_the_saved_image_processor_that_inference_uses():
    # pipeline("image-classification") and image_processor(...) outside the Trainer see what evaluation saw.
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    processor = ViTImageProcessorPil(size={"height": 32, "width": 32})
    smooth = Image.fromarray(noise(12, 12)).resize((96, 96), Image.Resampling.BICUBIC)
    expected = processor(smooth.convert("RGB"), return_tensors="pt")["pixel_values"]
    ours = AugmentAndNormalise(ImageGeometry.from_image_processor(processor)).evaluation(*batch_of(np.asarray(smooth)))
    grey_level = 1 / 255 / 0.5  # the processor resizes in 8 bits
    assert float((ours - expected).abs().max()) <= 1.01 * grey_level


def test_evaluation_resizes_the_shorter_side_then_crops_the_centre():
    # A wide image whose left and right thirds are black and centre white: a centre crop keeps only white.
    pixels = np.zeros((60, 180), dtype=np.uint8)
    pixels[:, 60:120] = 255
    square = AugmentAndNormalise(IDENTITY).evaluation(*batch_of(pixels))[0]
    assert square.shape == (3, 32, 32)
    assert float(square[:, :, 2:-2].min()) > 0.95


@pytest.mark.parametrize("height, width", [(60, 180), (97, 61), (80, 80), (33, 33)])
def test_the_evaluation_crop_box_is_the_part_of_the_image_the_model_sees(height, width):
    # Heatmaps are mapped back onto the image through evaluation_crop_box: resampling that box of the image must give
    # the evaluation view (here with PIL, to a grey level, on a smooth image).
    geometry = ImageGeometry(resize_size=40, crop_size=32, image_mean=(0, 0, 0), image_std=(1, 1, 1))
    smooth = Image.fromarray(noise(8, 8)).resize((width, height), Image.Resampling.BICUBIC)
    view = AugmentAndNormalise(geometry).evaluation(*batch_of(np.asarray(smooth)))[0, 0].numpy() * 255
    box = geometry.evaluation_crop_box(height, width)
    expected = np.asarray(smooth.resize((32, 32), Image.Resampling.BILINEAR, box=box), dtype=np.float64)
    assert np.abs(view - expected).max() <= 1.5
    left, top, right, bottom = box
    assert 0 <= left < right <= width and 0 <= top < bottom <= height
    assert (right - left) / width == pytest.approx(min(1.0, 32 / 40 * min(height, width) / width), abs=0.02)


def test_evaluation_is_deterministic_and_training_draws_from_its_generator_only():
    pixels, sizes = batch_of(noise(64, 80), noise(64, 80, 1))
    transform = AugmentAndNormalise(GEOMETRY, AugmentationConfig())
    assert torch.equal(transform.evaluation(pixels, sizes), transform.evaluation(pixels, sizes))
    first = transform.training(pixels, sizes, generator(1))
    torch.manual_seed(123)  # the global generator plays no part
    assert torch.equal(transform.training(pixels, sizes, generator(1)), first)
    assert not torch.equal(transform.training(pixels, sizes, generator(2)), first)
    assert not torch.equal(first[0], first[1])


def test_training_without_augmentation_is_the_evaluation_view():
    pixels, sizes = batch_of(noise(32, 32))
    evaluation = AugmentAndNormalise(GEOMETRY).evaluation(pixels, sizes)
    torch.testing.assert_close(AugmentAndNormalise(GEOMETRY, STILL).training(pixels, sizes, generator()), evaluation,
                               atol=1e-5, rtol=0)
    assert torch.equal(AugmentAndNormalise(GEOMETRY, None).training(pixels, sizes, generator()), evaluation)


def test_augmentation_never_flips_by_default():
    assert AugmentationConfig().horizontal_flip is False
    # Bright left half: with crops of the whole image and no rotation, the left stays brighter every time.
    pixels = np.zeros((32, 32), dtype=np.uint8)
    pixels[:, :16] = 200
    transform = AugmentAndNormalise(IDENTITY, AugmentationConfig(crop_scale=(1, 1), crop_ratio=(1, 1), rotation_degrees=0))
    out = transform.training(*batch_of(*[pixels] * 20), generator())[:, 0]
    assert bool((out[:, :, :16].mean(dim=(1, 2)) > out[:, :, 16:].mean(dim=(1, 2))).all())
    flipping = AugmentAndNormalise(IDENTITY, AugmentationConfig(crop_scale=(1, 1), crop_ratio=(1, 1), rotation_degrees=0,
                                                                horizontal_flip=True))
    out = flipping.training(*batch_of(*[pixels] * 20), generator())[:, 0]
    assert 0 < int((out[:, :, :16].mean(dim=(1, 2)) < out[:, :, 16:].mean(dim=(1, 2))).sum()) < 20


def test_draws_follow_the_configured_ranges_and_keep_crops_inside_each_image():
    sizes = torch.tensor([[64, 80], [40, 40], [256, 128]] * 50)
    config = AugmentationConfig(crop_scale=(0.5, 0.9), crop_ratio=(0.8, 1.25), rotation_degrees=10, brightness=0.2,
                                contrast=0.3)
    draws = draw_augmentations(sizes, config, generator())
    left, top, width, height = draws.crop_boxes.unbind(dim=1)
    assert bool((left >= 0).all() and (top >= 0).all())
    assert bool((left + width <= sizes[:, 1] + 1e-9).all() and (top + height <= sizes[:, 0] + 1e-9).all())
    area = width * height / (sizes[:, 0] * sizes[:, 1])
    assert bool(((area >= 0.5 - 1e-9) & (area <= 0.9 + 1e-9)).all())
    assert bool((draws.angles.abs() <= math.radians(10)).all()) and bool((draws.flips == 1).all())
    assert bool(((draws.brightness >= 0.8) & (draws.brightness <= 1.2)).all())
    assert bool(((draws.contrast >= 0.7) & (draws.contrast <= 1.3)).all())
    assert len(set(draws.angles.tolist())) == len(sizes)


def test_crop_and_rotation_resample_like_pil_affine_inside_the_image():
    # The resampling follows PIL's affine convention: continuous coordinates, pixel centres at +0.5; the output
    # square is scaled to the crop box and rotated about the box's centre.
    smooth = Image.fromarray(noise(24, 24, 4)).resize((96, 96), Image.Resampling.BICUBIC)
    geometry = ImageGeometry(resize_size=48, crop_size=48, image_mean=(0, 0, 0), image_std=(1, 1, 1))
    config = AugmentationConfig(brightness=0, contrast=0, rotation_degrees=10)
    for seed in range(5):
        ours = AugmentAndNormalise(geometry, config).training(*batch_of(np.asarray(smooth)), generator(seed))[0, 0] * 255
        draws = draw_augmentations(torch.tensor([[96, 96]]), config, generator(seed))
        left, top, width, height = draws.crop_boxes[0].tolist()
        angle, out = float(draws.angles[0]), 48
        cos, sin = math.cos(angle), math.sin(angle)
        a, b, d, e = cos * width / out, -sin * height / out, sin * width / out, cos * height / out
        coefficients = (a, b, left + width / 2 - (a + b) * out / 2, d, e, top + height / 2 - (d + e) * out / 2)
        pil = np.asarray(smooth.transform((out, out), Image.Transform.AFFINE, coefficients,
                                          resample=Image.Resampling.BILINEAR), dtype=np.float32)
        np.testing.assert_allclose(ours.numpy()[4:-4, 4:-4], pil[4:-4, 4:-4], atol=1.01)  # PIL rounds to 8 bits


def test_brightness_and_contrast_scale_about_the_image_mean_and_clip():
    pixels = np.tile(np.array([0, 100, 200, 250], dtype=np.uint8), (4, 1))  # every row the same
    geometry = ImageGeometry(resize_size=4, crop_size=4, image_mean=(0, 0, 0), image_std=(1, 1, 1))
    config = AugmentationConfig(crop_scale=(1, 1), crop_ratio=(1, 1), rotation_degrees=0, brightness=0.5, contrast=0.5)
    for seed in range(5):
        out = AugmentAndNormalise(geometry, config).training(*batch_of(pixels), generator(seed))[0]
        draws = draw_augmentations(torch.tensor([[4, 4]]), config, generator(seed))
        brightness, contrast = float(draws.brightness[0]), float(draws.contrast[0])
        values = pixels.astype(np.float64) / 255
        expected = np.clip((values - values.mean()) * brightness * contrast + values.mean() * brightness, 0, 1)
        for channel in out:
            np.testing.assert_allclose(channel.numpy(), expected, atol=1e-5)


def test_padding_of_a_mixed_batch_never_reaches_an_image():
    # The zeros around a small image in a batch of bigger ones must act as "outside the image", nothing more: its
    # crops and its resize come out as in a batch without padding (an image's draws don't depend on the others).
    small, padded, unpadded = noise(40, 30), noise(64, 64, 1), noise(40, 30, 2)
    transform = AugmentAndNormalise(GEOMETRY, AugmentationConfig())
    for seed in range(5):
        with_padding = transform.training(*batch_of(small, padded), generator(seed))[0]
        without = transform.training(*batch_of(small, unpadded), generator(seed))[0]
        torch.testing.assert_close(with_padding, without, atol=1e-4, rtol=0)  # float rounding of the coordinates
    evaluation = transform.evaluation(*batch_of(small, padded))
    assert torch.equal(evaluation[0], transform.evaluation(*batch_of(small))[0])
    assert torch.equal(evaluation[1], transform.evaluation(*batch_of(padded))[0])


def test_large_sources_are_shrunk_without_aliasing():
    # A one-pixel checkerboard at NIH's 1024 px: a plain bilinear shrink would sample stripes; a smooth grey is right.
    checkerboard = (np.indices((1024, 1024)).sum(axis=0) % 2 * 255).astype(np.uint8)
    transform = AugmentAndNormalise(IDENTITY, AugmentationConfig(rotation_degrees=0, brightness=0, contrast=0))
    for output in (transform.training(*batch_of(checkerboard), generator()), transform.evaluation(*batch_of(checkerboard))):
        assert abs(float(output.mean()) - 0.5) < 0.02 and float(output.std()) < 0.05


@pytest.mark.parametrize(
    "pixels, sizes, message",
    [
        (torch.zeros((1, 1, 4, 4)), torch.tensor([[4, 4]]), "uint8"),
        (torch.zeros((1, 3, 4, 4), dtype=torch.uint8), torch.tensor([[4, 4]]), r"\(N, 1, H, W\)"),
        (torch.zeros((2, 1, 4, 4), dtype=torch.uint8), torch.tensor([[4, 4]]), "image_sizes"),
        (torch.zeros((1, 1, 4, 4), dtype=torch.uint8), torch.tensor([[5, 4]]), "within the pixels"),
        (torch.zeros((1, 1, 4, 4), dtype=torch.uint8), torch.tensor([[0, 4]]), "within the pixels"),
    ],
    ids=["float pixels", "three channels", "sizes of another batch", "larger than the pixels", "empty image"],
)
def test_bad_batches_are_named(pixels, sizes, message):
    transform = AugmentAndNormalise(GEOMETRY, AugmentationConfig())
    with pytest.raises(ValueError, match=message):
        transform.training(pixels, sizes, generator())
    with pytest.raises(ValueError, match=message):
        transform.evaluation(pixels, sizes)


def test_augmentation_seeds_are_fixed_by_their_keys_and_unrelated_for_neighbours():
    assert augmentation_seed(42, 7, 0, 0) == augmentation_seed(42, 7, 0, 0)
    neighbours = {augmentation_seed(42, step, micro, process)
                  for step in range(20) for micro in range(3) for process in range(2)}
    assert len(neighbours) == 120 and all(0 <= seed < 2**63 for seed in neighbours)
    assert augmentation_seed(0, 1) != augmentation_seed(1, 0)


def test_geometry_comes_from_the_image_processor():
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    vit = ImageGeometry.from_image_processor(ViTImageProcessorPil(size={"height": 224, "width": 224}))
    assert (vit.resize_size, vit.crop_size, vit.image_mean, vit.image_std) == (224, 224, (0.5,) * 3, (0.5,) * 3)
    assert vit.interpolation == "bilinear"

    class ConvNextStyle:  # shortest_edge + crop_pct, ImageNet statistics, bicubic
        size = {"shortest_edge": 224}
        crop_pct = 0.875
        do_normalize = True
        image_mean = [0.485, 0.456, 0.406]
        image_std = [0.229, 0.224, 0.225]
        resample = 3

    convnext = ImageGeometry.from_image_processor(ConvNextStyle())
    assert (convnext.resize_size, convnext.crop_size, convnext.interpolation) == (256, 224, "bicubic")
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


# The Trainer hook, with a tiny ViT on the CPU.


@pytest.fixture(scope="module")
def tiny_trainer_parts(tmp_path_factory):
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, image_size=32,
                       patch_size=8, num_labels=NUM_LABELS, problem_type="multi_label_classification")
    rows = {"image": [Image.fromarray(noise(48, 40 + s % 2 * 8, s)) for s in range(12)],
            "labels": [[s % 2] * NUM_LABELS for s in range(12)]}
    features = datasets.Features({"image": datasets.Image(),
                                  "labels": datasets.Sequence(datasets.Value("int8"), length=NUM_LABELS)})
    dataset = datasets.Dataset.from_dict(rows, features=features).with_transform(decode_xrays)
    return config, dataset, tmp_path_factory.mktemp("augmenting-trainer")


def augmenting_trainer(config, dataset, output_dir, **arguments):
    """A Trainer subclass with the mixin, as the recipe's, and a hook that records what the model is given."""
    from transformers import Trainer, TrainingArguments, ViTForImageClassification

    class AugmentingTrainer(AugmentOnDeviceMixin, Trainer):
        pass

    torch.manual_seed(0)
    model = ViTForImageClassification(config)
    seen = []
    model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(
        (module.training, kwargs["pixel_values"].detach().clone())), with_kwargs=True)
    settings = dict(output_dir=str(output_dir), use_cpu=True, report_to="none", remove_unused_columns=False,
                    per_device_train_batch_size=4, per_device_eval_batch_size=4, save_strategy="no", seed=3)
    args = TrainingArguments(**{**settings, **arguments})
    trainer = AugmentingTrainer(model=model, args=args, train_dataset=dataset, eval_dataset=dataset,
                                data_collator=collate_xrays,
                                augment_and_normalise=AugmentAndNormalise(GEOMETRY, AugmentationConfig()))
    return trainer, seen


def test_the_trainer_augments_training_batches_on_the_models_device_from_the_step_seed(tiny_trainer_parts):
    config, dataset, workdir = tiny_trainer_parts
    trainer, seen = augmenting_trainer(config, dataset, workdir / "train", max_steps=3, gradient_accumulation_steps=1)
    trainer.train()
    assert [training for training, _ in seen] == [True] * 3
    # Replay the same batches: each step's inputs are the batch transform with the generator of (seed, step, 0, 0).
    loader = trainer.get_train_dataloader()
    for step, (batch, (_, given)) in enumerate(zip(loader, seen)):
        assert given.shape == (4, 3, 32, 32) and given.dtype == torch.float32
        expected = trainer.augment_and_normalise.training(
            batch["pixel_values"], batch["image_sizes"], generator(augmentation_seed(3, step, 0, 0)))
        assert torch.equal(given, expected)
        assert not torch.equal(given, trainer.augment_and_normalise.evaluation(batch["pixel_values"], batch["image_sizes"]))


def test_micro_batches_of_one_step_get_their_own_draws(tiny_trainer_parts):
    config, dataset, workdir = tiny_trainer_parts
    trainer, seen = augmenting_trainer(config, dataset, workdir / "accumulate", max_steps=1,
                                       gradient_accumulation_steps=2, per_device_train_batch_size=2)
    trainer.train()
    loader = trainer.get_train_dataloader()
    for micro_batch, (batch, (_, given)) in enumerate(zip(loader, seen)):
        expected = trainer.augment_and_normalise.training(
            batch["pixel_values"], batch["image_sizes"], generator(augmentation_seed(3, 0, micro_batch, 0)))
        assert torch.equal(given, expected)
    assert len(seen) == 2


def test_evaluation_and_prediction_are_not_augmented_and_repeat_exactly(tiny_trainer_parts):
    config, dataset, workdir = tiny_trainer_parts
    trainer, seen = augmenting_trainer(config, dataset, workdir / "evaluate")
    trainer.evaluate()
    first = [pixels for _, pixels in seen]
    seen.clear()
    prediction = trainer.predict(dataset)
    assert [training for training, _ in seen] == [False] * 3
    assert all(torch.equal(one, other) for one, other in zip(first, [pixels for _, pixels in seen]))
    batch = next(iter(trainer.get_eval_dataloader()))
    assert torch.equal(first[0], trainer.augment_and_normalise.evaluation(batch["pixel_values"], batch["image_sizes"]))
    assert prediction.predictions.shape == (12, NUM_LABELS)


def test_the_models_inputs_take_its_dtype(tiny_trainer_parts):
    config, dataset, workdir = tiny_trainer_parts
    trainer, seen = augmenting_trainer(config, dataset, workdir / "bf16")
    trainer.model.to(torch.bfloat16)
    trainer.predict(dataset)
    assert {pixels.dtype for _, pixels in seen} == {torch.bfloat16}


def test_mixed_precision_leaves_the_inputs_in_the_models_dtype(tiny_trainer_parts):
    # Under the Trainer's bf16 autocast the parameters stay float32, and so do the inputs made for them.
    config, dataset, workdir = tiny_trainer_parts
    trainer, seen = augmenting_trainer(config, dataset, workdir / "autocast", max_steps=1, bf16=True)
    trainer.train()
    batch = next(iter(trainer.get_train_dataloader()))
    expected = trainer.augment_and_normalise.training(
        batch["pixel_values"], batch["image_sizes"], generator(augmentation_seed(3, 0, 0, 0)))
    assert seen[0][1].dtype == torch.float32 and torch.equal(seen[0][1], expected)


def test_float_batches_pass_through_and_uint8_needs_its_sizes(tiny_trainer_parts):
    config, dataset, workdir = tiny_trainer_parts
    trainer, _ = augmenting_trainer(config, dataset, workdir / "pass-through")
    floats = {"pixel_values": torch.rand(2, 3, 32, 32)}
    assert trainer.model_inputs(trainer.model, floats, training=True) is floats
    with pytest.raises(ValueError, match="image_sizes"):
        trainer.model_inputs(trainer.model, {"pixel_values": torch.zeros((2, 1, 32, 32), dtype=torch.uint8)}, training=False)
