"""The test images a model gets most confidently wrong, as one picture."""

from __future__ import annotations

import einops
import numpy as np


def most_confident_mistakes(probs: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """Indices of up to ``count`` wrongly predicted examples, most confident first."""
    predicted = probs.argmax(axis=-1)
    wrong = np.flatnonzero(predicted != labels)
    confidence = probs[wrong, predicted[wrong]]
    return wrong[np.argsort(-confidence, kind="stable")[:count]]


def mistakes_grid(images: np.ndarray, labels: np.ndarray, probs: np.ndarray, title: str = "") -> np.ndarray:
    """``images`` (``[N, H, W, C]``, raw pixels) in a grid, each titled with its
    true and predicted class and the predicted probability, as an RGB
    ``uint8`` image. Pixels are stretched to the range the shown images span.
    The grid is one picture in one axes: a subplot per image took five times longer."""
    import matplotlib  # imported where the figures are drawn
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from jaxclf.figures.canvas import DPI

    columns = max(1, min(4, len(images)))
    height, width = images.shape[1:3]
    band, margin = -(-height * 3 // 10), -(-width // 10)  # room for each image's caption, and between columns
    grid = _tiled(images, columns, band, margin)
    figure = Figure(figsize=(1.6 * columns, 1.8 * len(grid) / (height + band) + 0.4), dpi=DPI)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_axes((0.02, 0.02, 0.96, 1 - 0.02 - 0.4 / figure.get_figheight()))
    colours = matplotlib.colormaps["gray"].with_extremes(bad="white")
    axes.imshow(grid[..., 0] if grid.shape[-1] == 1 else np.nan_to_num(grid, nan=1.0), cmap=colours, vmin=0, vmax=1)
    for index, (label, row) in enumerate(zip(labels, probs, strict=True)):
        predicted = int(row.argmax())
        x = (index % columns + 0.5) * (width + 2 * margin) - 0.5
        y = (index // columns) * (height + band) + band - 0.5
        caption = f"true {int(label)}, said {predicted}\np = {row[predicted]:.2f}"
        axes.text(x, y, caption, ha="center", va="bottom", fontsize=7)
    axes.axis("off")
    figure.suptitle(title or "no mistakes", fontsize=9)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _tiled(images: np.ndarray, columns: int, band: int, margin: int) -> np.ndarray:
    """``images`` scaled to [0, 1] in rows of ``columns``, with ``band`` pixels
    above each and ``margin`` on either side, NaN (drawn white); at least one row."""
    rows = max(1, -(-len(images) // columns))
    low, high = (float(images.min()), float(images.max())) if len(images) else (0.0, 1.0)
    shown = (np.asarray(images, np.float32) - low) / max(high - low, 1e-9)
    blanks = np.full((rows * columns - len(images), *images.shape[1:]), np.nan)
    padding = ((0, 0), (band, 0), (margin, margin), (0, 0))
    tiles = np.pad(np.concatenate([shown, blanks]), padding, constant_values=np.nan)
    return einops.rearrange(tiles, "(r c) h w ch -> (r h) (c w) ch", r=rows)
