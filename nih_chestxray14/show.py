"""A grid of X-rays titled with their findings, as a PNG: the "visualising the dataset" step as one call."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Optional

import numpy as np
from datasets import Dataset
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .files import atomic_path
from .labels import NO_FINDING

_DPI = 100
_TITLE_SHARE = 0.17


def grid_shape(count: int, columns: Optional[int] = None) -> tuple[int, int]:
    """(rows, columns) for ``count`` images: ``columns`` if given, else the smallest square that holds them."""
    columns = columns or int(np.ceil(np.sqrt(count)))
    return int(np.ceil(count / columns)), columns


def grid_axes(count: int, columns: Optional[int], cell_size: int, title_share: float = _TITLE_SHARE):
    """A figure of ``count`` square cells of ``cell_size`` pixels, ``columns`` per row (:func:`grid_shape`), and one
    axes per cell, in reading order, below a band of ``title_share`` of the cell left for its title.

    Returns:
        ``(figure, axes)``: a matplotlib ``Figure`` on the Agg canvas and a list of ``count`` axes.
    """
    rows, columns = grid_shape(count, columns)
    figure = Figure(figsize=(columns * cell_size / _DPI, rows * cell_size / _DPI), dpi=_DPI)
    FigureCanvasAgg(figure)
    cell_width, cell_height, margin = 1 / columns, 1 / rows, 0.02
    axes = []
    for position in range(count):
        row, column = divmod(position, columns)
        axes.append(figure.add_axes((
            (column + margin) * cell_width,
            (rows - row - 1 + margin) * cell_height,
            (1 - 2 * margin) * cell_width,
            (1 - title_share - margin) * cell_height,
        )))
    return figure, axes


def save_grid(figure: Figure, out: os.PathLike) -> Path:
    """Save a :func:`grid_axes` figure as a PNG at its own size, atomically; return the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as partial:
        figure.savefig(partial, dpi=_DPI, format="png")
    return out


def title_of(example: dict, findings_names) -> str:
    """``"00000001_000.png\\nCardiomegaly, Effusion"``; "No Finding" for an image with none of the 14."""
    names = [findings_names.int2str(index) for index in example["findings"]]
    return f"{example['image_id']}\n" + textwrap.fill(", ".join(names) or NO_FINDING, width=32)


def show_grid(dataset: Dataset, out: os.PathLike, *, count: int = 16, columns: Optional[int] = None,
              cell_size: int = 256, seed: Optional[int] = None) -> Path:
    """Draw ``count`` images of ``dataset`` in a grid and save it as a PNG of exactly
    ``(columns * cell_size) x (rows * cell_size)`` pixels; return its path.

    The images are the first ``count`` rows, or a random sample when ``seed`` is given. Only those rows are decoded.

    Raises:
        ValueError: ``count`` or ``cell_size`` not positive, or ``out`` not ending in ``.png``.
    """
    out = Path(out)
    if count < 1:
        raise ValueError(f"-n {count}: show at least one image")
    if cell_size < 32:
        raise ValueError(f"--cell-size {cell_size}: use at least 32 pixels per image")
    if out.suffix.lower() != ".png":
        raise ValueError(f"{out}: the grid is written as PNG, so give a file name ending in .png")
    count = min(count, len(dataset))
    if count == 0:
        raise ValueError("the split has no images to show")
    if seed is None:
        indices = list(range(count))
    else:
        indices = sorted(np.random.default_rng(seed).choice(len(dataset), size=count, replace=False).tolist())
    figure, cells = grid_axes(count, columns, cell_size)
    findings_names = dataset.features["findings"].feature
    title_size = max(5, cell_size // 28)
    for axes, example in zip(cells, dataset.select(indices)):
        axes.imshow(np.asarray(example["image"].convert("L")), cmap="gray", vmin=0, vmax=255, aspect="equal")
        axes.set_title(title_of(example, findings_names), fontsize=title_size, pad=2)
        axes.axis("off")
    return save_grid(figure, out)
