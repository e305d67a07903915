"""Phone photos: decoded no larger than the conversion needs, and never on the loop worker's event loop."""
import numpy as np
import pytest

from fmnist.images.preprocess import WORK_SIDE, decode_image, to_model_pixels
from tests.images import encode, photo


def _garment() -> np.ndarray:
    a = np.zeros((28, 28), np.uint8)
    a[4:24, 9:19] = 200  # a light block: a dress-ish silhouette on black, the dataset's polarity
    a[4:8, 5:23] = 180
    return a


def test_big_jpeg_decodes_at_a_reduced_scale_with_the_same_result():
    data = photo(_garment(), (4000, 3000))
    small = decode_image(data, work_side=WORK_SIDE)
    assert WORK_SIDE <= max(small.size) < 2 * WORK_SIDE and small.size[0] / small.size[1] == pytest.approx(4 / 3, 0.01)
    whole = decode_image(data)
    assert whole.size == (4000, 3000)
    a, b = to_model_pixels(small, "auto").astype(int), to_model_pixels(whole, "auto").astype(int)
    assert np.abs(a - b).mean() < 4 and np.abs(a - b).max() < 80  # the same 28x28 up to resampling


def test_formats_without_a_reduced_decode_and_small_pictures_are_whole():
    from PIL import Image

    big_png = encode(Image.new("RGB", (1200, 900), (240, 240, 240)), "PNG")
    assert decode_image(big_png, work_side=WORK_SIDE).size == (1200, 900)
    small_jpeg = encode(Image.new("RGB", (2 * WORK_SIDE - 1, 300), (240, 240, 240)), "JPEG")
    assert decode_image(small_jpeg, work_side=WORK_SIDE).size == (2 * WORK_SIDE - 1, 300)
