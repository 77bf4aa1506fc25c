"""Encoded images (JPEG, PNG) to ``[H, W, channels]`` uint8 arrays.

A JPEG goes through libjpeg-turbo (``simplejpeg``), at 1/2, 1/4 or 1/8 of its
size where the caller's crop allows (libjpeg's own scaling skips most of the
inverse DCT), and into a buffer that is lent for the duration of a ``with``
block and then reused: the pixels are read once, resized into their batch,
and no image pays for fresh memory, whose first touch can cost as much as the
decode itself (``bench/input.py`` measures the whole path). Any other format
(PNG) goes through OpenCV, whole.
"""

from __future__ import annotations

import contextlib
import io
import math
import threading
from collections.abc import Iterator

import cv2
import numpy as np
import simplejpeg
from PIL import Image

# The loader's worker threads decode images side by side; OpenCV's own thread
# pool inside each call would only make them compete for the same cores.
cv2.setNumThreads(1)

_JPEG_START = b"\xff\xd8"  # every JPEG's first two bytes (the SOI marker)


def _is_jpeg(encoded: bytes) -> bool:
    return encoded[:2] == _JPEG_START


def image_size(encoded: bytes) -> tuple[int, int]:
    """``(width, height)`` from the header alone."""
    if _is_jpeg(encoded):
        height, width, _, _ = _jpeg_header(encoded)
        return width, height
    with Image.open(io.BytesIO(encoded)) as image:
        return image.width, image.height


def jpeg_reduction(box_size: tuple[int, int], size: tuple[int, int]) -> int:
    """The largest of 1, 2, 4, 8 that keeps a ``box_size`` (width, height) window
    at least ``size`` (height, width): a JPEG decoded that much smaller loses nothing the resize keeps."""
    reduction = 1
    while reduction < 8 and box_size[0] >= 2 * reduction * size[1] and box_size[1] >= 2 * reduction * size[0]:
        reduction *= 2
    return reduction


@contextlib.contextmanager
def decoded_image(encoded: bytes, channels: int, reduction: int = 1) -> Iterator[np.ndarray]:
    """The image's pixels for the ``with`` block: a JPEG at ``1 / reduction`` of its
    size (2, 4 or 8) in a lent buffer, valid only inside the block; any other format whole."""
    if not _is_jpeg(encoded):
        yield _decode_with_opencv(encoded, channels)
        return
    height, width, _, _ = _jpeg_header(encoded)
    with _BUFFERS.lend(height * width * channels) as buffer:
        try:
            # strict=False: a truncated JPEG decodes as far as it goes, as OpenCV and PIL do.
            image = simplejpeg.decode_jpeg(
                encoded,
                colorspace="GRAY" if channels == 1 else "RGB",
                min_height=math.ceil(height / reduction),
                min_width=math.ceil(width / reduction),
                buffer=buffer,
                strict=False,
            )
        except ValueError as error:
            raise ValueError(f"the JPEG cannot be decoded ({error})") from None
        yield image


def _jpeg_header(encoded: bytes) -> tuple[int, int, str, str]:
    try:
        return simplejpeg.decode_jpeg_header(encoded, strict=False)
    except ValueError as error:
        raise ValueError(f"the JPEG's header cannot be read ({error})") from None


def _decode_with_opencv(encoded: bytes, channels: int) -> np.ndarray:
    flag = cv2.IMREAD_GRAYSCALE if channels == 1 else cv2.IMREAD_COLOR_RGB
    image = cv2.imdecode(np.frombuffer(encoded, np.uint8), flag | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise ValueError("the image cannot be decoded (neither a JPEG nor a complete image OpenCV reads)")
    return image.reshape(*image.shape[:2], channels)


class _Buffers:
    """Byte buffers lent to one decode at a time and kept for the next: as many
    as decodes ever ran at once, each as large as the largest image it held."""

    def __init__(self) -> None:
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def lend(self, nbytes: int) -> Iterator[np.ndarray]:
        with self._lock:
            buffer = self._free.pop() if self._free else np.empty(0, np.uint8)
        if buffer.size < nbytes:
            buffer = np.empty(nbytes, np.uint8)
        try:
            yield buffer
        finally:
            with self._lock:
                self._free.append(buffer)


_BUFFERS = _Buffers()
