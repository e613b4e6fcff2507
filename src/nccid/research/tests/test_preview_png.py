"""``preview_png``: the first frame of any image as a small 8-bit PNG, grey or colour, the
right way round (MONOCHROME1 inverted), never larger than asked."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset

from nccid.research.dataset import preview_png


def _dataset(pixels: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 12,
             frames: int | None = None) -> Dataset:
    ds = Dataset()
    ds.set_pixel_data(pixels, photometric, bits)
    if frames is not None:
        assert int(ds.NumberOfFrames) == frames
    return ds


def _png(ds: Dataset, size: int = 1024) -> Image.Image:
    data = preview_png(ds, size)
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    return Image.open(io.BytesIO(data))


def _gradient(rows: int, columns: int) -> np.ndarray:
    """Dark on the left, bright on the right."""
    return np.tile(np.linspace(0, 4095, columns).astype(np.uint16), (rows, 1))


def test_a_grey_image_keeps_its_shape_and_its_full_range():
    image = _png(_dataset(_gradient(64, 128)))
    assert image.mode == "L" and image.size == (128, 64)
    values = np.asarray(image)
    assert values[:, 0].max() == 0 and values[:, -1].min() == 255


def test_monochrome1_is_shown_the_right_way_round():
    values = np.asarray(_png(_dataset(_gradient(64, 128), "MONOCHROME1")))
    assert values[:, 0].min() == 255 and values[:, -1].max() == 0


def test_a_big_image_is_made_small_keeping_its_aspect():
    image = _png(_dataset(_gradient(1024, 2048)), size=256)
    assert image.size == (256, 128)


def test_a_colour_image_stays_in_colour():
    pixels = np.zeros((32, 48, 3), dtype=np.uint8)
    pixels[:, :24, 0] = 255  # red on the left
    pixels[:, 24:, 2] = 255  # blue on the right
    image = _png(_dataset(pixels, "RGB", 8))
    assert image.mode == "RGB" and image.size == (48, 32)
    left, right = image.getpixel((0, 0)), image.getpixel((47, 31))
    assert left[0] > 200 and left[2] < 50
    assert right[2] > 200 and right[0] < 50


def test_a_multi_frame_image_shows_its_first_frame_in_grey():
    """Three grey frames are frames, not the red, green and blue of one colour image."""
    frames = np.full((3, 32, 32), 4095, dtype=np.uint16)
    frames[0] = 0
    image = _png(_dataset(frames, frames=3))
    assert image.mode == "L" and image.size == (32, 32)
    assert np.asarray(image).max() == 0
