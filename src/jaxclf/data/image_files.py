"""A user's image files, read defensively: only regular files, the header
before the pixels, and every pixel format either converted to 8 bits per
channel or left out with one warning.

A folder of images is not the dataset a model was trained on: it may hold a
FIFO (opening it would wait forever), a decompression bomb (a small PNG of
20000x20000 pixels), images of another size (decoded, they can take
gigabytes), 16-bit or palette images (read as they are, their values wrap
or are palette indices) and float images (of no known range).
"""

from __future__ import annotations

import logging
import os
import stat
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

logger = logging.getLogger(__name__)

# Pillow's modes, by how their pixels become 8-bit channels.
GREY_MODES = {"1", "L", "LA", "La"}
COLOUR_MODES = {"RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}  # PNG's 16-bit grey opens as I;16 or I


def regular_files(paths: Sequence[str], key: str) -> list[str]:
    """The regular files (or links to them) among ``paths``; a warning names
    each other path (missing, a FIFO, a device, a socket), left out."""
    kept = []
    for path in paths:
        try:
            is_regular = stat.S_ISREG(os.stat(path).st_mode)  # stat never opens: a FIFO cannot block it
        except OSError:
            logger.warning("%s: %s: no such file; left out", key, path)
            continue
        if is_regular:
            kept.append(path)
        else:
            logger.warning("%s: %s is not a regular file; left out", key, path)
    return kept


def read_image(path: str, image_shape: Sequence[int], key: str) -> np.ndarray | None:
    """The image at ``path`` as ``uint8`` pixels of ``image_shape`` (``[H, W, C]``,
    ``C`` 1 or 3), or None with one warning (naming ``key``) saying why it was
    left out."""
    pixels = _decoded(path, image_shape)
    if isinstance(pixels, str):
        logger.warning("%s: %s %s; left out", key, path, pixels)
        return None
    return pixels


def _decoded(path: str, image_shape: Sequence[int]) -> np.ndarray | str:
    """The pixels, or why they cannot be had. Size and mode come from the
    header: an image of another size is never decoded."""
    height, width, channels = image_shape
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # its size is checked below
            with Image.open(path) as image:
                if (image.height, image.width) != (height, width):
                    return f"is {image.width}x{image.height}; the run's model takes {width}x{height} images"
                converted = _as_mode(image, channels)
                return converted if isinstance(converted, str) else converted.reshape(height, width, channels)
    except Image.DecompressionBombError as error:
        return f"is too large to read safely ({error})"
    except (OSError, UnidentifiedImageError, ValueError):
        return "is not a readable image"


def _as_mode(image: Image.Image, channels: int) -> np.ndarray | str:
    """``image``'s pixels as ``uint8`` with ``channels`` channels, or why they cannot be."""
    mode = image.mode
    if mode in ("P", "PA"):  # palette indices become the colours they stand for, in the model's channels
        mode = "L" if channels == 1 else "RGB"
        image = image.convert(mode)
    if mode in SIXTEEN_BIT_MODES:
        pixels = np.asarray(image, np.int64)
        if pixels.min() < 0 or pixels.max() > 65535:
            return f"holds {mode} pixels outside 16 bits; save it with 8 or 16 bits per channel"
        sixteen_bit = (pixels * 255 + 32767) // 65535  # 0..65535 -> 0..255, rounded
        return _with_channels(sixteen_bit.astype(np.uint8), 1, channels, mode)
    if mode in GREY_MODES:
        return _with_channels(np.asarray(image.convert("L")), 1, channels, mode)
    if mode in COLOUR_MODES:
        return _with_channels(np.asarray(image.convert("RGB")), 3, channels, mode)
    return f"has {mode} pixels (floating point or unknown: no 8-bit range); save it with 8 bits per channel"


def _with_channels(pixels: np.ndarray, has: int, wanted: int, mode: str) -> np.ndarray | str:
    if has != wanted:
        return f"has {has} channel{'s' * (has > 1)} ({mode}); the run's model takes {wanted}"
    return pixels
