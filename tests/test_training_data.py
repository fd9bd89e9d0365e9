"""The recipe's data loading: decode to 8-bit grey per image, collate uint8 batches, and the host-side collator for IPUs.

No float work happens here; augmentation and normalisation are tested in ``test_training_augment.py``.
"""

import pickle

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from nih_chestxray14.labels import NUM_LABELS
from training.augment import AugmentAndNormalise, AugmentationConfig, ImageGeometry
from training.data import AugmentingCollator, collate_xrays, decode_xrays, to_grayscale

GEOMETRY = ImageGeometry(resize_size=32, crop_size=32, image_mean=(0.4, 0.5, 0.6), image_std=(0.2, 0.25, 0.5))


def xray(size=(80, 64), seed=0):
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0]), dtype=np.uint8)
    return Image.fromarray(pixels, mode="L")


def labels(count):
    return [[index % 2] * NUM_LABELS for index in range(count)]


def examples(output):
    """The per-example dicts a DataLoader hands the collator, from a transform's batch output."""
    return [dict(zip(output, values)) for values in zip(*output.values())]


def test_decode_gives_8_bit_grey_pixels_at_their_stored_size_and_passes_labels_through():
    images = [xray((80, 64)), xray((64, 64), seed=1)]
    output = decode_xrays({"image": images, "labels": labels(2)})
    assert [pixels.shape for pixels in output["pixel_values"]] == [(64, 80), (64, 64)]
    assert all(pixels.dtype == np.uint8 for pixels in output["pixel_values"])
    np.testing.assert_array_equal(output["pixel_values"][0], np.asarray(images[0]))
    assert output["labels"] == labels(2)


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
    assert decode_xrays({"image": [image]})["pixel_values"][0].min() == 255


def test_collate_stacks_uint8_pixels_with_their_sizes_and_float_labels():
    output = decode_xrays({"image": [xray((40, 30), seed=s) for s in range(3)], "labels": labels(3)})
    batch = collate_xrays(examples(output))
    assert batch["pixel_values"].shape == (3, 1, 30, 40) and batch["pixel_values"].dtype == torch.uint8
    assert batch["image_sizes"].tolist() == [[30, 40]] * 3
    assert batch["labels"].dtype == torch.float32 and batch["labels"].tolist() == [[float(v) for v in row] for row in labels(3)]
    np.testing.assert_array_equal(batch["pixel_values"][1, 0].numpy(), output["pixel_values"][1])


def test_the_sizes_stay_on_the_host_when_the_trainer_moves_a_batch_to_the_accelerator():
    # The Trainer (through accelerate) moves every tensor of a batch; the augmentation reads the sizes on the CPU,
    # and sizes copied back from a GPU would make the host wait for the device at every step.
    from accelerate.utils import send_to_device

    output = decode_xrays({"image": [xray((40, 30), seed=s) for s in range(2)], "labels": labels(2)})
    moved = send_to_device(collate_xrays(examples(output)), torch.device("meta"), non_blocking=True)
    assert moved["pixel_values"].device.type == "meta" and moved["labels"].device.type == "meta"
    assert isinstance(moved["image_sizes"], np.ndarray) and moved["image_sizes"].tolist() == [[30, 40]] * 2


def test_images_of_different_sizes_share_a_batch_in_the_top_left_corner_of_a_zero_canvas():
    output = decode_xrays({"image": [xray((40, 30)), xray((20, 50), seed=1)]})
    batch = collate_xrays(examples(output))
    assert batch["pixel_values"].shape == (2, 1, 50, 40)
    assert batch["image_sizes"].tolist() == [[30, 40], [50, 20]]
    np.testing.assert_array_equal(batch["pixel_values"][0, 0, :30, :40].numpy(), output["pixel_values"][0])
    assert int(batch["pixel_values"][0, 0, 30:].max()) == 0 and int(batch["pixel_values"][1, 0, :, 20:].max()) == 0


@pytest.mark.parametrize(
    "bad, message",
    [
        ([], "empty batch"),
        ([{"pixel_values": np.zeros((4, 4), dtype=np.float32)}], "uint8 grey images"),
        ([{"pixel_values": np.zeros((4, 4, 3), dtype=np.uint8)}], "uint8 grey images"),
        ([{"pixel_values": np.zeros((4, 4), dtype=np.uint8), "labels": [0, 1, 0]}], "length 14"),
    ],
    ids=["empty", "float pixels", "RGB pixels", "short labels"],
)
def test_collate_rejects_what_it_cannot_batch(bad, message):
    with pytest.raises(ValueError, match=message):
        collate_xrays(bad)


def test_the_loader_gives_the_same_batches_in_the_main_process_and_in_two_workers():
    rows = {"image": [xray((32 + s % 3, 32), seed=s) for s in range(10)], "labels": labels(10)}
    dataset = datasets.Dataset.from_dict(rows, features=datasets.Features(
        {"image": datasets.Image(), "labels": datasets.Sequence(datasets.Value("int8"), length=NUM_LABELS)}))
    dataset = dataset.with_transform(decode_xrays)

    def batches(workers):
        loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collate_xrays, num_workers=workers)
        return list(loader)

    in_process, in_workers = batches(0), batches(2)
    assert len(in_process) == len(in_workers) == 3
    for one, other in zip(in_process, in_workers):
        assert one.keys() == other.keys() == {"pixel_values", "image_sizes", "labels"}
        assert all(torch.equal(torch.as_tensor(one[key]), torch.as_tensor(other[key])) for key in one)


def test_decode_collate_and_the_host_collator_cross_process_boundaries():
    # Data-loader workers (and optimum-graphcore's loader) pickle the transform and the collator.
    assert pickle.loads(pickle.dumps(decode_xrays)) is decode_xrays
    assert pickle.loads(pickle.dumps(collate_xrays)) is collate_xrays
    collator = AugmentingCollator(AugmentAndNormalise(GEOMETRY, AugmentationConfig(horizontal_flip=True)), training=True)
    restored = pickle.loads(pickle.dumps(collator))
    assert repr(restored) == repr(collator)
    batch = examples(decode_xrays({"image": [xray(), xray(seed=1)], "labels": labels(2)}))
    torch.manual_seed(0)
    expected = collator(batch)["pixel_values"]
    torch.manual_seed(0)
    assert torch.equal(restored(batch)["pixel_values"], expected)


def test_the_host_collator_applies_the_same_batch_transform_as_the_device_path():
    transform = AugmentAndNormalise(GEOMETRY, AugmentationConfig())
    batch = examples(decode_xrays({"image": [xray(), xray((64, 64), seed=1), xray((50, 40), seed=2)], "labels": labels(3)}))
    collated = collate_xrays(batch)

    evaluation = AugmentingCollator(transform, training=False)(batch)
    assert evaluation.keys() == {"pixel_values", "labels"}
    assert torch.equal(evaluation["pixel_values"], transform.evaluation(collated["pixel_values"], collated["image_sizes"]))
    assert torch.equal(evaluation["labels"], collated["labels"])

    # In training, each batch's generator is seeded from torch's global generator (seeded per worker by the loader).
    torch.manual_seed(7)
    training = AugmentingCollator(transform, training=True)(batch)["pixel_values"]
    torch.manual_seed(7)
    seed = int(torch.randint(0, 2**62, (), dtype=torch.int64))
    expected = transform.training(collated["pixel_values"], collated["image_sizes"], torch.Generator().manual_seed(seed))
    assert training.shape == (3, 3, 32, 32) and training.dtype == torch.float32
    assert torch.equal(training, expected)
    assert not torch.equal(training, evaluation["pixel_values"])
