"""Where the model looks for one finding: ``explain`` from ``training/heatmaps.py``, drawn over the X-ray.

``training/heatmaps.py`` imports only numpy, torch, PIL and transformers, so the published Space carries a copy of it
beside this file. :func:`load_explain` finds that copy (a Space) or the recipe's own file (a clone of the project),
and is called only when the first heatmap is asked for. Its interface::

    explain(model, image_processor, image, method="auto", findings=None) -> Explanation
    Explanation.heatmaps: label name -> float32 (H, W) in [0, 1], at the input image's own size
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Callable, Tuple

import numpy as np
from PIL import Image

HEATMAPS_MODULE = "heatmaps"

CANDIDATES: Tuple[Path, ...] = (
    Path(__file__).resolve().with_name("heatmaps.py"),                     # a published Space
    Path(__file__).resolve().parents[1] / "training" / "heatmaps.py",      # a clone of the project
)
"""Where :func:`load_explain` looks for the module, in order."""


class HeatmapsUnavailable(RuntimeError):
    """No ``heatmaps.py`` was found, or it has no ``explain``; the page then shows no heatmap and says why."""


def load_explain() -> Callable:
    """The ``explain`` function of the first of :data:`CANDIDATES` that exists.

    Raises:
        HeatmapsUnavailable: if none exists or it defines no ``explain``.
    """
    module = sys.modules.get(HEATMAPS_MODULE)
    if module is None:
        path = next((candidate for candidate in CANDIDATES if candidate.is_file()), None)
        if path is None:
            raise HeatmapsUnavailable(
                "heatmaps are not available: heatmaps.py was found neither beside app.py nor in training/"
            )
        spec = importlib.util.spec_from_file_location(HEATMAPS_MODULE, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[HEATMAPS_MODULE] = module  # dataclasses look their module up while the file runs
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[HEATMAPS_MODULE]
            raise
    explain = getattr(module, "explain", None)
    if not callable(explain):
        raise HeatmapsUnavailable(f"heatmaps are not available: {module.__file__} defines no explain()")
    return explain


def overlay(image: Image.Image, heatmap: np.ndarray, opacity: float = 0.55) -> Image.Image:
    """``heatmap`` in the "inferno" colour map over the grayscale ``image``, more opaque where it is higher.

    Args:
        image: the image that was explained, any mode; shown in grayscale.
        heatmap: float (H, W) in [0, 1]; resized to the image's size if it differs.
        opacity: the overlay's opacity where the heatmap is 1.

    Returns:
        An RGB image of ``image``'s size.

    Raises:
        ValueError: if ``heatmap`` is not two-dimensional.
    """
    from matplotlib import colormaps

    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim != 2:
        raise ValueError(f"a heatmap is (H, W); got shape {heat.shape}")
    if heat.shape != (image.height, image.width):
        heat = np.asarray(Image.fromarray(heat, mode="F").resize(image.size, Image.Resampling.BILINEAR))
    heat = np.clip(np.nan_to_num(heat), 0.0, 1.0)
    gray = np.asarray(image.convert("L"), dtype=np.float32)[..., None] / 255.0
    colour = colormaps["inferno"](heat)[..., :3]
    alpha = opacity * heat[..., None]
    blended = (1.0 - alpha) * gray + alpha * colour
    return Image.fromarray(np.round(blended * 255.0).astype(np.uint8), mode="RGB")
