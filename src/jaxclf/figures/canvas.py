"""Figures drawn many times with new data: the frame once, the data each time.

Axes, ticks, labels, colorbars and legends take most of a matplotlib
figure's drawing time and do not change between one evaluation's diagram
and the next. ``BlittedFigure`` draws them once, keeps the pixels, and each
``render`` puts them back and draws only the given artists over them
(matplotlib's blitting, off-screen on the Agg canvas): the same pixels as a
full draw, in a fraction of the time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 80


class BlittedFigure:
    """An off-screen figure of ``size`` inches. Build it on ``figure``, giving
    ``animated=True`` to every artist that changes between images (and to
    every one drawn over those, so that they keep their order), then
    ``freeze()``; after that, ``render(artists)`` gives an image."""

    def __init__(self, size: tuple[float, float]):
        self.figure = Figure(figsize=size, dpi=DPI)
        self.canvas = FigureCanvasAgg(self.figure)  # no global backend change
        self._background = None

    def freeze(self) -> None:
        """Draws everything not animated: the frame each image starts from."""
        self.canvas.draw()
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)

    def render(self, artists: Iterable[Artist], temporary: Sequence[Artist] = ()) -> np.ndarray:
        """The frame with ``artists`` and ``temporary`` drawn over it (lowest
        ``zorder`` first), as an RGB ``uint8`` image ``[H, W, 3]``; the
        ``temporary`` ones (this image's labels) are then removed from the figure."""
        try:
            if self._background is None:
                raise RuntimeError("BlittedFigure.render before freeze()")
            self.canvas.restore_region(self._background)
            for artist in sorted([*artists, *temporary], key=lambda artist: artist.get_zorder()):
                self.figure.draw_artist(artist)
            return np.asarray(self.canvas.buffer_rgba())[..., :3].copy()
        finally:
            for artist in temporary:
                artist.remove()
