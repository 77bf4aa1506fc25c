"""Decoding encoded images: JPEG scale, channel order, damaged files, and the
buffers lent to each decode."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from jaxclf.data.decode import decoded_image, image_size, jpeg_reduction


def _encoded(image: np.ndarray, format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format, quality=95)
    return buffer.getvalue()


def test_a_jpeg_is_decoded_no_smaller_than_its_crop_needs():
    assert jpeg_reduction((1000, 800), (224, 224)) == 2  # 1000/4 = 250 >= 224 but 800/4 = 200 < 224
    assert jpeg_reduction((800, 1000), (224, 224)) == 2  # the width binds as well as the height
    assert jpeg_reduction((4000, 3000), (224, 224)) == 8  # the most libjpeg does
    assert jpeg_reduction((447, 447), (224, 224)) == 1


@pytest.mark.parametrize("reduction", [1, 2, 4, 8])
def test_only_a_jpeg_is_decoded_at_a_reduced_scale(reduction):
    image = np.zeros((64, 48, 3), np.uint8)
    with decoded_image(_encoded(image, "JPEG"), 3, reduction) as jpeg:
        assert jpeg.shape == (64 // reduction, 48 // reduction, 3)
    with decoded_image(_encoded(image, "PNG"), 3, reduction) as png:
        assert png.shape == (64, 48, 3)


@pytest.mark.parametrize("reduction", [1, 2, 4, 8])
def test_a_colour_jpeg_keeps_red_green_blue_order_at_every_scale(reduction):
    stripes = np.zeros((64, 96, 3), np.uint8)
    for channel in range(3):
        stripes[:, 32 * channel : 32 * (channel + 1), channel] = 255  # red, green, blue from left to right
    with decoded_image(_encoded(stripes, "JPEG"), 3, reduction) as image:
        thirds = image.reshape(image.shape[0], 3, -1, 3)[:, :, 1:-1].mean(axis=(0, 2))  # [stripe, channel]
    np.testing.assert_allclose(thirds, 255 * np.eye(3), atol=12)


def test_grey_and_colour_convert_either_way():
    grey = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1))
    with decoded_image(_encoded(grey, "JPEG"), 3) as as_colour:
        np.testing.assert_allclose(as_colour[..., 0], grey, atol=3)
        np.testing.assert_array_equal(as_colour[..., 0], as_colour[..., 2])
    colour = np.stack([grey, grey, grey], axis=-1)
    with decoded_image(_encoded(colour, "PNG"), 1) as as_grey:
        np.testing.assert_array_equal(as_grey[..., 0], grey)


def test_the_size_comes_from_the_header_of_either_format():
    image = np.zeros((30, 50, 3), np.uint8)
    assert image_size(_encoded(image, "JPEG")) == image_size(_encoded(image, "PNG")) == (50, 30)


def test_a_truncated_jpeg_decodes_as_far_as_it_goes():
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    encoded = _encoded(noise, "JPEG")
    with decoded_image(encoded, 3) as whole:
        top_rows = whole[:8].copy()
    with decoded_image(encoded[: len(encoded) // 2], 3) as image:
        assert image.shape == (64, 64, 3)
        np.testing.assert_array_equal(image[:8], top_rows)  # the rows that arrived


def test_bytes_that_are_no_image_fail_with_one_line():
    for garbage in (b"\xff\xd8 not a jpeg", b"not an image at all"):
        with pytest.raises(Exception, match="^[^\n]*$"), decoded_image(garbage, 3):
            pass


def test_a_decode_reuses_a_finished_buffer_and_never_one_in_use():
    encoded = _encoded(np.zeros((64, 48, 3), np.uint8), "JPEG")
    with decoded_image(encoded, 3) as earlier:
        pass
    with decoded_image(encoded, 3) as first:
        assert np.shares_memory(first, earlier)  # the finished decode's buffer
        with decoded_image(encoded, 3) as second:
            assert not np.shares_memory(first, second)  # not the one in use
