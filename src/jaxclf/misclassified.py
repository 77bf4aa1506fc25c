"""The test images a model gets most confidently wrong, as one picture."""

from __future__ import annotations

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
    ``uint8`` image. Pixels are stretched to the range the shown images span."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    columns = max(1, min(4, len(images)))
    rows = max(1, -(-len(images) // columns))
    figure = Figure(figsize=(1.6 * columns, 1.8 * rows + 0.4), dpi=80)
    canvas = FigureCanvasAgg(figure)
    low, high = (float(images.min()), float(images.max())) if len(images) else (0.0, 1.0)
    for index, (image, label, row) in enumerate(zip(images, labels, probs, strict=True)):
        axes = figure.add_subplot(rows, columns, index + 1)
        shown = (image.astype(np.float32) - low) / max(high - low, 1e-9)
        axes.imshow(shown[..., 0] if shown.shape[-1] == 1 else shown, cmap="gray", vmin=0, vmax=1)
        predicted = int(row.argmax())
        axes.set_title(f"true {int(label)}, said {predicted}\np = {row[predicted]:.2f}", fontsize=7)
        axes.axis("off")
    figure.suptitle(title or "no mistakes", fontsize=9)
    figure.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
