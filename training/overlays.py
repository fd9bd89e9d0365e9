"""A grid of X-rays with a finding's heatmap laid over each, the expert boxes and the boxes drawn from the heatmap.

Drawn with ``matplotlib.figure.Figure`` (no ``pyplot``), laid out like ``python -m nih_chestxray14 show``'s grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np
from matplotlib import colormaps
from matplotlib.patches import Rectangle

from nih_chestxray14.show import grid_axes, save_grid

Box = Tuple[float, float, float, float]

_TITLE_SHARE = 0.2
TRUTH_COLOUR = "lime"
DETECTED_COLOUR = "yellow"


@dataclass
class Overlay:
    """One cell of the grid, all in one frame (the box file's 1024-pixel frame, or any other).

    Attributes:
        image: ``(H, W)`` uint8 grey pixels, at any resolution covering the frame.
        heatmap: ``(h, w)`` in [0, 1], at any resolution covering the frame.
        frame_size: ``(width, height)`` of the frame that the boxes are in.
        truths: the expert boxes of the finding, ``(x, y, w, h)`` in frame pixels.
        detected: the boxes drawn from the heatmap, likewise.
        title: shown above the cell.
    """

    image: np.ndarray
    heatmap: np.ndarray
    frame_size: Tuple[int, int]
    truths: Sequence[Box]
    detected: Sequence[Box]
    title: str


def draw_overlays(overlays: Sequence[Overlay], out: Path, *, columns: int = 4, cell_size: int = 256) -> Path:
    """Draw ``overlays`` in a grid (``columns`` wide) and save it atomically as a PNG; return ``out``.

    Expert boxes are solid green, boxes drawn from the heatmap dashed yellow, the heatmap a ``jet`` map whose opacity
    grows with its value (cold regions leave the X-ray visible).

    Raises:
        ValueError: if ``overlays`` is empty.
    """
    if not overlays:
        raise ValueError("no heatmaps to draw")
    figure, cells = grid_axes(len(overlays), min(columns, len(overlays)), cell_size, title_share=_TITLE_SHARE)
    title_size = max(5, cell_size // 30)
    for axes, overlay in zip(cells, overlays):
        width, height = overlay.frame_size
        extent = (0, width, height, 0)  # frame pixels, y down, whatever the arrays' resolution
        axes.imshow(overlay.image, cmap="gray", vmin=0, vmax=255, extent=extent, interpolation="bilinear")
        axes.imshow(_translucent(overlay.heatmap), extent=extent, interpolation="bilinear")
        for boxes, colour, style in ((overlay.truths, TRUTH_COLOUR, "-"), (overlay.detected, DETECTED_COLOUR, "--")):
            for x, y, w, h in boxes:
                axes.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=colour, linestyle=style, linewidth=1.2))
        axes.set_xlim(0, width)
        axes.set_ylim(height, 0)
        axes.set_title(overlay.title, fontsize=title_size, pad=2)
        axes.axis("off")
    return save_grid(figure, out)


def _translucent(heatmap: np.ndarray) -> np.ndarray:
    """``(h, w)`` in [0, 1] → ``(h, w, 4)`` RGBA: ``jet`` colours, opacity 0.6 × value."""
    values = np.clip(np.asarray(heatmap, dtype=np.float32), 0.0, 1.0)
    rgba = colormaps["jet"](values)
    rgba[..., 3] = 0.6 * values
    return rgba
