"""Where an image classifier of transformers looks: one heatmap per (image, finding), for ViTs and for CNNs.

:func:`explain` is the one-image entry point for inference code::

    explanation = explain(model, image_processor, Image.open("chest_x_ray.png"))
    explanation.probabilities["Effusion"]   # sigmoid probability
    explanation.heatmaps["Effusion"]        # float32 (height, width) in [0, 1], at the image's own size

:func:`class_heatmaps` does the same for a batch of model inputs, at the model's input resolution, and
:func:`heatmap_in_frame` maps such a heatmap back onto the image (or any frame, such as the 1024-pixel frame of NIH's
box file) given the window the model saw.

Methods (:data:`METHODS`):

- ``"attention_rollout"`` (ViTs): Abnar & Zuidema, "Quantifying Attention Flow in Transformers", ACL 2020. Each
  layer's attention is averaged over heads, the residual connection is added as ``0.5 A + 0.5 I`` (rows
  re-normalised), the layers are multiplied from the input up, and the class token's row over the patch tokens is
  the map. It does not depend on the finding: every finding of an image gets the same map.
- ``"gradient_rollout"`` (ViTs): Chefer, Gur & Wolf, "Generic Attention-model Explainability for Interpreting
  Bi-Modal and Encoder-Decoder Transformers", ICCV 2021. Each layer's attention ``A`` is weighted by the gradient of
  the finding's logit, ``mean over heads of max(0, dlogit/dA * A)``, and accumulated from the input up as
  ``R <- R + A_bar R`` from ``R = I``; the class token's row over the patch tokens is the map.
- ``"gradcam"``: Selvaraju et al., "Grad-CAM", ICCV 2017, on the last feature map: for CNNs (ResNet, ConvNeXt, ...)
  the output of the last stage; for ViTs the tokens entering the last block (the last block's output patch tokens
  do not reach a class-token classifier); the same for timm backbones (transformers' timm wrapper), read by a hook.
  Channels are weighted by their gradient averaged over positions, summed, and negative values cut to 0.
- ``"auto"``: :data:`DEFAULT_METHODS` for the model's kind (:func:`model_kind`), chosen by measured localization on
  synthetic releases with known boxes (the project README gives the figures).

Each map is scaled to [0, 1] by its own minimum and maximum (a constant map becomes all zeros), then upsampled
bilinearly from the token or feature grid to the input resolution.

Attention weights are returned only by transformers' eager attention: when a model's kernel returns none, the
attention methods switch it with ``model.set_attn_implementation("eager")`` and leave it so
(``model.set_attn_implementation("sdpa")`` switches back). Probabilities do not change. Gradients are taken with
``torch.autograd.grad`` on intermediate outputs, so the parameters' ``.grad`` are left alone; the model runs in eval
mode and its training mode is restored afterwards.

This file imports only NumPy, torch and PIL (and takes transformers' models and image processors), so that inference
code such as a demo Space can ship a copy of it.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image

METHODS: Tuple[str, ...] = ("attention_rollout", "gradient_rollout", "gradcam")
"""The heatmap methods; ``"auto"`` picks one of them by the model's kind."""

DEFAULT_METHODS: Dict[str, str] = {"vit": "gradient_rollout", "other": "gradcam"}
"""What ``method="auto"`` means for each model kind (see :func:`model_kind`). For ViTs, gradient-weighted rollout
localized best on the synthetic releases (README, "Where the model looks"); the others have only Grad-CAM."""

_ATTENTION_METHODS = ("attention_rollout", "gradient_rollout")

Window = Tuple[float, float, float, float]
"""``(left, top, right, bottom)``: the part of a frame the model's input covers, in that frame's pixels."""


@dataclass
class Explanation:
    """One image, explained.

    Attributes:
        probabilities: label name → sigmoid probability, in ``config.id2label`` order.
        heatmaps: label name → float32 ``(H, W)`` map in [0, 1] at the input image's own size, for the findings asked.
    """

    probabilities: Dict[str, float]
    heatmaps: Dict[str, np.ndarray]


@dataclass
class HeatmapBatch:
    """:func:`class_heatmaps`' result.

    Attributes:
        probabilities: float32 ``(N, num_labels)`` sigmoid probabilities.
        heatmaps: per image, float32 ``(len(targets[i]), H, W)`` in [0, 1] at the input resolution ``(H, W)``, in the
            order of ``targets[i]``.
    """

    probabilities: np.ndarray
    heatmaps: List[np.ndarray]


def model_kind(model) -> str:
    """``"vit"`` for transformers with global self-attention over patch tokens (a config with ``patch_size`` and no
    ``window_size``: ViT, DeiT, BEiT, DINOv2, ...); ``"other"`` for CNNs (ResNet, ConvNeXt, ...) and windowed
    transformers (Swin), whose attention can't be rolled out."""
    config = model.config
    windowed = getattr(config, "window_size", None) is not None
    return "vit" if getattr(config, "patch_size", None) is not None and not windowed else "other"


def resolve_method(model, method: str = "auto") -> str:
    """``method``, with ``"auto"`` replaced by :data:`DEFAULT_METHODS` of the model's kind.

    Raises:
        ValueError: for an unknown method, or an attention method on a model without global self-attention.
    """
    if method == "auto":
        return DEFAULT_METHODS[model_kind(model)]
    if method not in METHODS:
        raise ValueError(f"method must be 'auto' or one of {', '.join(METHODS)}, got {method!r}")
    if method in _ATTENTION_METHODS and model_kind(model) != "vit":
        raise ValueError(f"method {method!r} needs global self-attention over patch tokens, which "
                         f"{model.config.model_type} has not: use 'gradcam'")
    return method


def explain(model, image_processor, image: Image.Image, method: str = "auto",
            findings: Optional[Sequence[str]] = None) -> Explanation:
    """Probabilities of every label and a heatmap per finding for one image.

    The image goes through ``image_processor`` as ``pipeline("image-classification")`` sends it (converted to RGB
    first), so the probabilities are the pipeline's sigmoid scores. Each heatmap is mapped back onto the image,
    zero where the processor cropped the image away.

    Args:
        model: a transformers image classifier (``AutoModelForImageClassification``); multi-label, scored by sigmoid.
        image_processor: its image processor (resize to ``height``/``width``, or ``shortest_edge`` with a centre crop
            or ConvNeXt's ``crop_pct``).
        image: any PIL image; 16-bit images should be scaled to 8 bits first (``convert("RGB")`` clips them).
        method: ``"attention_rollout"``, ``"gradient_rollout"``, ``"gradcam"`` or ``"auto"`` (see the module's
            docstring).
        findings: label names to explain; ``None`` explains every label.

    Raises:
        ValueError: for an unknown method or finding, or a processor whose resizing this module cannot map back.
    """
    labels = [model.config.id2label[index] for index in range(len(model.config.id2label))]
    wanted = list(labels) if findings is None else list(findings)
    unknown = [name for name in wanted if name not in labels]
    if unknown:
        raise ValueError(f"findings {unknown} are not labels of the model; its labels are {', '.join(labels)}")
    rgb = image.convert("RGB")
    pixel_values = image_processor(images=rgb, return_tensors="pt")["pixel_values"]
    window = input_window(image_processor, rgb.width, rgb.height)
    batch = class_heatmaps(model, pixel_values, [[labels.index(name) for name in wanted]], method)
    heatmaps = {name: heatmap_in_frame(batch.heatmaps[0][position], window, (rgb.width, rgb.height))
                for position, name in enumerate(wanted)}
    probabilities = {name: float(value) for name, value in zip(labels, batch.probabilities[0])}
    return Explanation(probabilities=probabilities, heatmaps=heatmaps)


def class_heatmaps(model, pixel_values: torch.Tensor, targets: Sequence[Sequence[int]], method: str = "auto",
                   chunk_size: int = 32) -> HeatmapBatch:
    """Heatmaps of the label indices ``targets[i]`` on image ``i`` of a batch, at the input resolution.

    Gradient methods run one forward and one backward pass per (image, label) pair, in chunks of ``chunk_size`` pairs
    (each pair is its own row, so one backward pass serves the whole chunk); attention rollout runs one forward pass
    per image.

    Args:
        pixel_values: float ``(N, 3, H, W)``, as the image processor (or the recipe's evaluation transform) makes them.
        targets: for each of the ``N`` images, the label indices to explain (may be empty).

    Raises:
        ValueError: for a bad method, a label index out of range, or a model whose outputs the method can't use.
    """
    method = resolve_method(model, method)
    if len(targets) != len(pixel_values):
        raise ValueError(f"targets has {len(targets)} entries for {len(pixel_values)} images")
    num_labels = int(model.config.num_labels)
    if any(not 0 <= int(label) < num_labels for labels in targets for label in labels):
        raise ValueError(f"label indices must be in [0, {num_labels}), got {[list(labels) for labels in targets]}")
    parameter = next(model.parameters())
    pixel_values = pixel_values.to(device=parameter.device, dtype=parameter.dtype)
    height, width = pixel_values.shape[-2:]
    counts = [len(labels) for labels in targets]
    with _eval_mode(model):
        if method == "attention_rollout":
            logits, maps = _attention_rollout(model, pixel_values)
            per_image = _to_input_resolution(maps, height, width)
            heatmaps = [np.repeat(per_image[index:index + 1], count, axis=0) for index, count in enumerate(counts)]
        else:
            logits, maps = _per_pair(model, pixel_values, targets, method, chunk_size)
            heatmaps = np.split(_to_input_resolution(maps, height, width), np.cumsum(counts)[:-1])
    probabilities = torch.sigmoid(logits.float()).cpu().numpy()
    return HeatmapBatch(probabilities=probabilities, heatmaps=list(heatmaps))


def _per_pair(model, pixel_values: torch.Tensor, targets: Sequence[Sequence[int]], method: str, chunk_size: int):
    """Logits ``(N, L)`` and ``(pairs, h, w)`` maps, one row per (image, label) pair in the order of ``targets``."""
    pairs = [(image, int(label)) for image, labels in enumerate(targets) for label in labels]
    logits = torch.empty((len(pixel_values), int(model.config.num_labels)), dtype=torch.float32)
    maps: List[torch.Tensor] = []
    for start in range(0, len(pairs), max(1, chunk_size)):
        chunk = pairs[start:start + chunk_size]
        rows = torch.tensor([image for image, _ in chunk], device=pixel_values.device)
        labels = torch.tensor([label for _, label in chunk], device=pixel_values.device)
        chunk_logits, chunk_maps = _gradient_maps(model, pixel_values[rows], labels, method)
        logits[rows.cpu()] = chunk_logits.float().cpu()
        maps.append(chunk_maps)
    unexplained = [image for image, labels in enumerate(targets) if not labels]
    if unexplained:
        with torch.no_grad():
            rows = torch.tensor(unexplained, device=pixel_values.device)
            logits[rows.cpu()] = model(pixel_values=pixel_values[rows]).logits.float().cpu()
    return logits, (torch.cat(maps) if maps else torch.zeros((0, 1, 1)))


def _gradient_maps(model, pixel_values: torch.Tensor, labels: torch.Tensor, method: str):
    """One forward and one backward pass over rows that each explain their own label: logits and ``(n, h, w)`` maps."""
    height, width = pixel_values.shape[-2:]
    with torch.enable_grad():
        if method == "gradient_rollout":
            outputs = _with_attentions(model, pixel_values)
            attentions = _global_attentions(model, outputs.attentions, len(pixel_values))
            score = outputs.logits.gather(1, labels[:, None]).sum()
            gradients = torch.autograd.grad(score, attentions)
            with torch.no_grad():
                relevance = _gradient_rollout(attentions, gradients)
                maps = _token_maps(relevance, height, width)
        else:
            with _timm_features(model) as captured:
                outputs = model(pixel_values=pixel_values, output_hidden_states=captured is None)
            features = captured[0] if captured else _last_feature_map(model, outputs.hidden_states)
            score = outputs.logits.gather(1, labels[:, None]).sum()
            (gradient,) = torch.autograd.grad(score, features)
            with torch.no_grad():
                maps = _gradcam(features, gradient, height, width)
    return outputs.logits.detach(), _scaled(maps)


@contextlib.contextmanager
def _timm_features(model) -> Iterator[Optional[List[torch.Tensor]]]:
    """For a timm backbone wrapped by transformers (``TimmWrapperForImageClassification``): a list that receives
    Grad-CAM's feature map during the forward pass, the same one as for transformers' models: the tokens entering
    the last block of a ViT-like backbone (``blocks``), the last stage's output of a CNN (``stages``, or ResNet's
    ``layer4``). Its hidden states are not used: timm returns them reshaped, off the path to the logits.

    Yields None for other models, and raises ValueError for a timm backbone with neither.
    """
    backbone = getattr(model, "timm_model", None)
    if backbone is None:
        yield None
        return
    captured: List[torch.Tensor] = []
    blocks = getattr(backbone, "blocks", None)
    stages = getattr(backbone, "stages", None) or getattr(backbone, "layer4", None)
    if isinstance(blocks, torch.nn.Sequential) and len(blocks):
        handle = blocks[-1].register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    elif isinstance(stages, torch.nn.Module):
        last = stages[-1] if isinstance(stages, torch.nn.Sequential) else stages
        handle = last.register_forward_hook(lambda module, args, output: captured.append(output))
    else:
        raise ValueError(f"timm's {type(backbone).__name__} has neither blocks nor stages for Grad-CAM to read")
    try:
        yield captured
    finally:
        handle.remove()


def _attention_rollout(model, pixel_values: torch.Tensor):
    """Logits ``(N, L)`` and rollout maps ``(N, h, w)``, from one forward pass without gradients."""
    with torch.no_grad():
        outputs = _with_attentions(model, pixel_values)
        attentions = _global_attentions(model, outputs.attentions, len(pixel_values))
        row = None
        for attention in reversed(attentions):  # the class token's row of A_L ... A_1, from the top down
            # float64: rolled-out attention is close to uniform, and the [0, 1] scaling magnifies rounding
            mixed = 0.5 * attention.double().mean(dim=1) + 0.5 * torch.eye(attention.shape[-1], dtype=torch.float64,
                                                                          device=attention.device)
            mixed = mixed / mixed.sum(dim=-1, keepdim=True)
            row = mixed[:, 0] if row is None else torch.bmm(row[:, None], mixed)[:, 0]
        maps = _token_maps(row, *pixel_values.shape[-2:])
    return outputs.logits, _scaled(maps)


def _with_attentions(model, pixel_values: torch.Tensor):
    """The model's outputs with attention weights; a model whose attention kernel returns none (SDPA, flash) is
    switched to eager attention, the one kernel that does, and run again."""
    outputs = model(pixel_values=pixel_values, output_attentions=True)
    if not outputs.attentions:
        model.set_attn_implementation("eager")
        outputs = model(pixel_values=pixel_values, output_attentions=True)
    return outputs


def _gradient_rollout(attentions: Sequence[torch.Tensor], gradients: Sequence[torch.Tensor]) -> torch.Tensor:
    """The class token's row of ``(I + A_bar_L) ... (I + A_bar_1)``, ``(N, T)``, computed from the top down."""
    row = None
    for attention, gradient in zip(reversed(attentions), reversed(gradients)):
        weighted = (gradient.double() * attention.double()).clamp(min=0).mean(dim=1)  # A_bar: (N, T, T)
        if row is None:
            row = weighted[:, 0].clone()
            row[:, 0] += 1.0
        else:
            row = row + torch.bmm(row[:, None], weighted)[:, 0]
    return row


def _gradcam(features: torch.Tensor, gradient: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Grad-CAM maps ``(N, h, w)`` from a CNN feature map ``(N, C, h, w)`` or ViT tokens ``(N, T, C)``."""
    features, gradient = features.float(), gradient.float()
    if features.ndim == 4:
        weights = gradient.mean(dim=(2, 3), keepdim=True)
        return (features * weights).sum(dim=1).clamp(min=0)
    grid_height, grid_width, extra = _token_grid(features.shape[1], height, width)
    patches, patch_gradient = features[:, extra:], gradient[:, extra:]
    weights = patch_gradient.mean(dim=1, keepdim=True)
    cam = (patches * weights).sum(dim=-1).clamp(min=0)
    return cam.reshape(len(cam), grid_height, grid_width)


def _global_attentions(model, attentions, batch_size: int) -> Tuple[torch.Tensor, ...]:
    """The attention tensors, checked to be one ``(N, heads, T, T)`` per layer over the whole token sequence."""
    if not attentions:
        raise ValueError(f"{model.config.model_type} returned no attention weights (with eager attention and "
                         "output_attentions=True): use method='gradcam'")
    attentions = tuple(attentions)
    shapes = sorted({tuple(attention.shape) for attention in attentions})
    first = attentions[0].shape
    if len(shapes) != 1 or len(first) != 4 or first[0] != batch_size or first[-1] != first[-2]:
        raise ValueError(f"{model.config.model_type}'s attention is not one global self-attention per layer over "
                         f"{batch_size} image(s) (shapes {shapes}), so it can't be rolled out: use method='gradcam'")
    return attentions


def _last_feature_map(model, hidden_states) -> torch.Tensor:
    """A CNN's last feature map ``(N, C, h, w)``, or a ViT's tokens entering its last block ``(N, T, C)``."""
    if not hidden_states:
        raise ValueError(f"{model.config.model_type} returned no hidden states with output_hidden_states=True")
    last = hidden_states[-1]
    if last.ndim == 4:
        return last
    if last.ndim == 3 and len(hidden_states) >= 2:
        return hidden_states[-2]
    raise ValueError(f"{model.config.model_type}'s hidden states have shape {tuple(last.shape)}: expected a feature "
                     "map (N, C, h, w) or tokens (N, T, C)")


def _token_maps(token_scores: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Scores over all tokens ``(N, T)`` → ``(N, h, w)`` over the patch grid (leading special tokens dropped)."""
    grid_height, grid_width, extra = _token_grid(token_scores.shape[1], height, width)
    return token_scores[:, extra:].reshape(len(token_scores), grid_height, grid_width)


def _token_grid(num_tokens: int, height: int, width: int) -> Tuple[int, int, int]:
    """``(grid_height, grid_width, leading special tokens)``: the fewest leading tokens (class, distillation,
    registers) that leave a patch grid with the input's aspect ratio.

    Raises:
        ValueError: when no such grid exists.
    """
    for extra in range(num_tokens):
        patches = num_tokens - extra
        grid_width = round(math.sqrt(patches * width / height))
        if grid_width > 0 and patches % grid_width == 0 and (patches // grid_width) * width == grid_width * height:
            return patches // grid_width, grid_width, extra
    raise ValueError(f"{num_tokens} tokens do not form a patch grid for a {height} x {width} input")


def _scaled(maps: torch.Tensor) -> torch.Tensor:
    """Each ``(h, w)`` map of ``(N, h, w)`` scaled to [0, 1] by its own min and max; constant maps become zeros."""
    flat = maps.reshape(len(maps), -1)
    low = flat.min(dim=1, keepdim=True).values
    span = flat.max(dim=1, keepdim=True).values - low
    scaled = torch.where(span > 0, (flat - low) / span.clamp(min=torch.finfo(flat.dtype).tiny), torch.zeros_like(flat))
    return scaled.reshape(maps.shape).float()


def _to_input_resolution(grids: torch.Tensor, height: int, width: int) -> np.ndarray:
    """``(K, h, w)`` grids → float32 ``(K, height, width)`` by bilinear upsampling (one call), clipped to [0, 1]."""
    if len(grids) == 0:
        return np.zeros((0, height, width), dtype=np.float32)
    upsampled = torch.nn.functional.interpolate(grids[:, None].float(), size=(int(height), int(width)),
                                                mode="bilinear", align_corners=False)[:, 0]
    return upsampled.clamp(0.0, 1.0).cpu().numpy()


def heatmap_in_frame(heatmap: np.ndarray, window: Window, frame_size: Tuple[int, int]) -> np.ndarray:
    """Map a heatmap of the model's input onto a frame: bilinear inside ``window``, zero outside.

    Args:
        heatmap: ``(H, W)`` at the model's input resolution.
        window: ``(left, top, right, bottom)`` of the frame that the input covers, in frame pixels (edges, not
            centres: an uncropped image of width ``w`` is ``(0, 0, w, h)``).
        frame_size: ``(width, height)`` of the frame, in pixels.

    Returns:
        float32 ``(height, width)`` in [0, 1].

    Raises:
        ValueError: for an empty window.
    """
    left, top, right, bottom = (float(value) for value in window)
    if right <= left or bottom <= top:
        raise ValueError(f"the window {window} is empty")
    heatmap = np.asarray(heatmap, dtype=np.float32)
    # Bilinear resampling is separable: one weight matrix per axis, (frame pixels, input pixels).
    rows = _bilinear_weights(int(frame_size[1]), top, bottom, heatmap.shape[0])
    columns = _bilinear_weights(int(frame_size[0]), left, right, heatmap.shape[1])
    return np.clip(rows @ heatmap @ columns.T, 0.0, 1.0)


def _bilinear_weights(frame_pixels: int, start: float, stop: float, input_pixels: int) -> np.ndarray:
    """``(frame_pixels, input_pixels)`` float32 weights of bilinear resampling (pixel centres at +0.5, edge values
    held at the borders), with zero rows for frame pixels whose centre lies outside ``[start, stop]``."""
    centres = np.arange(frame_pixels, dtype=np.float64) + 0.5
    source = np.clip((centres - start) * (input_pixels / (stop - start)) - 0.5, 0.0, input_pixels - 1)
    low = np.floor(source).astype(np.int64)
    high = np.minimum(low + 1, input_pixels - 1)
    fraction = source - low
    inside = (centres >= start) & (centres <= stop)
    weights = np.zeros((frame_pixels, input_pixels), dtype=np.float64)
    index = np.arange(frame_pixels)
    np.add.at(weights, (index, low), np.where(inside, 1.0 - fraction, 0.0))
    np.add.at(weights, (index, high), np.where(inside, fraction, 0.0))
    return weights.astype(np.float32)


def input_window(image_processor, width: int, height: int) -> Window:
    """The part of a ``width`` × ``height`` image that ``image_processor`` hands the model, in the image's pixels.

    Knows the resizing of transformers' processors: a fixed ``height``/``width`` (the whole image, stretched), a
    ``shortest_edge`` with ConvNeXt's ``crop_pct`` (below 384 px: resize to ``shortest_edge / crop_pct``, centre-crop
    ``shortest_edge``), and a ``shortest_edge`` with an optional centre ``crop_size``.

    Raises:
        ValueError: for a processor resized some other way.
    """
    data_config = getattr(image_processor, "data_config", None)
    if isinstance(data_config, dict) and "input_size" in data_config:
        return _timm_window(data_config, width, height)
    size = _size_fields(getattr(image_processor, "size", None))
    if not getattr(image_processor, "do_resize", True):
        resized_width, resized_height = width, height
    elif size.get("height") and size.get("width"):
        resized_width, resized_height = int(size["width"]), int(size["height"])
    elif size.get("shortest_edge"):
        edge = int(size["shortest_edge"])
        crop_pct = getattr(image_processor, "crop_pct", None)
        if crop_pct is not None and edge >= 384:
            return (0.0, 0.0, float(width), float(height))  # ConvNeXt warps to a square at 384 px and above
        target = int(edge / crop_pct) if crop_pct is not None else edge
        scale = target / min(width, height)
        resized_width, resized_height = (target, int(height * scale)) if width <= height else (int(width * scale), target)
        if crop_pct is not None:
            return _centre_crop(width, height, resized_width, resized_height, edge, edge)
    else:
        raise ValueError(f"cannot tell what part of the image {type(image_processor).__name__} keeps (size={size}); "
                         "use a processor with size height/width or shortest_edge")
    crop = _size_fields(getattr(image_processor, "crop_size", None))
    if getattr(image_processor, "do_center_crop", False) and crop.get("height") and crop.get("width"):
        return _centre_crop(width, height, resized_width, resized_height, int(crop["width"]), int(crop["height"]))
    return (0.0, 0.0, float(width), float(height))


def _timm_window(data_config: Dict, width: int, height: int) -> Window:
    """The window of timm's evaluation transform: resize to ``floor(input size / crop_pct)`` (the shortest edge for
    ``crop_mode="center"``, both edges for ``"squash"``), then a centre crop of the input size, rounded as
    torchvision's ``Resize`` and ``CenterCrop`` round."""
    crop_height, crop_width = (int(value) for value in data_config["input_size"][-2:])
    crop_pct = float(data_config.get("crop_pct") or 1.0)
    mode = data_config.get("crop_mode") or "center"
    scale_height, scale_width = math.floor(crop_height / crop_pct), math.floor(crop_width / crop_pct)
    if mode == "squash":
        resized_width, resized_height = scale_width, scale_height
    elif mode == "center" and scale_height == scale_width:
        short, long = sorted((width, height))
        resized_long = int(scale_height * long / short)
        resized_width, resized_height = (scale_width, resized_long) if width <= height else (resized_long, scale_height)
    else:
        raise ValueError(f"cannot tell what part of the image timm's crop_mode {mode!r} keeps at input size "
                         f"{crop_height}x{crop_width}; heatmaps know crop_mode 'center' (square inputs) and 'squash'")
    top = int(round((resized_height - crop_height) / 2.0))
    left = int(round((resized_width - crop_width) / 2.0))
    scale_x, scale_y = resized_width / width, resized_height / height
    return (left / scale_x, top / scale_y, (left + crop_width) / scale_x, (top + crop_height) / scale_y)


def _centre_crop(width: int, height: int, resized_width: int, resized_height: int, crop_width: int,
                 crop_height: int) -> Window:
    """The window of a centre crop of a resized image, in the original image's pixels (transformers' rounding)."""
    scale_x, scale_y = resized_width / width, resized_height / height
    left, top = (resized_width - crop_width) // 2, (resized_height - crop_height) // 2
    return (left / scale_x, top / scale_y, (left + crop_width) / scale_x, (top + crop_height) / scale_y)


def _size_fields(size) -> Dict[str, int]:
    """A processor's ``size``/``crop_size`` (dict, ``SizeDict`` or int) as a plain dict of the fields that are set."""
    if size is None:
        return {}
    if isinstance(size, int):
        return {"height": size, "width": size}
    keys = ("height", "width", "shortest_edge", "longest_edge")
    values = {key: (size.get(key) if isinstance(size, dict) else getattr(size, key, None)) for key in keys}
    return {key: value for key, value in values.items() if value is not None}


@contextlib.contextmanager
def _eval_mode(model) -> Iterator[None]:
    """Run ``model`` in eval mode (no dropout), then restore its training mode."""
    if not model.training:
        yield
        return
    model.eval()
    try:
        yield
    finally:
        model.train()
