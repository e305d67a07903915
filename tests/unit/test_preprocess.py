import numpy as np
import pytest
from PIL import Image

from fmnist.evaluation.evaluate import artifact_logits
from fmnist.images.preprocess import ImageError, ImageTooLarge, Preprocessing, decode_image, to_model_pixels
from fmnist.registry import resolve
from tests.conftest import SHIPPED
from tests.images import encode, png, restyled


def _garment() -> np.ndarray:
    a = np.zeros((28, 28), np.uint8)
    a[4:24, 8:20] = 200  # a light block on dark, touching nothing
    a[4:24, 2:8] = 120
    return a


def test_normalize_matches_manifest_formula():
    pre = Preprocessing(mean=0.25, std=0.5)
    x = pre.normalize(np.array([[0, 255] * 14] * 28, np.uint8))
    assert x.shape == (1, 1, 28, 28) and x.dtype == np.float32
    assert x[0, 0, 0, 0] == pytest.approx(-0.5) and x[0, 0, 0, 1] == pytest.approx(1.5)


def test_raw_28x28_is_taken_as_is():
    a = _garment()
    for mode in ("auto", "raw"):
        np.testing.assert_array_equal(to_model_pixels(decode_image(png(a)), mode), a)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "CMYK", "LA", "1"])
def test_every_mode_decodes_to_the_same_garment(mode):
    a = _garment()
    im = Image.fromarray(a, "L")
    if mode == "I;16":
        im = Image.fromarray(a.astype(np.uint16) * 257)  # 16-bit, full range
        assert im.mode.startswith("I;16")
    elif mode == "1":
        im = im.convert("1", dither=Image.Dither.NONE)
        a = (a >= 128).astype(np.uint8) * 255
    elif mode != "L":
        im = im.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode in ("I;16", "1") else "PNG")
    _assert_close(to_model_pixels(decode_image(encode(im, fmt)), "raw"), a, lossy=fmt == "JPEG")


def _assert_close(out, a, lossy=False):
    diff = np.abs(out.astype(int) - a)
    if lossy:  # JPEG rings around the block's sharp edges
        assert diff.mean() < 3 and diff.max() <= 40
    else:
        assert diff.max() <= 1


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"])
def test_formats(fmt):
    a = _garment()
    kw = {"lossless": True} if fmt == "WEBP" else {}
    out = to_model_pixels(decode_image(encode(Image.fromarray(a).convert("RGB"), fmt, **kw)), "raw")
    _assert_close(out, a, lossy=fmt == "JPEG")


def test_gif_takes_first_frame():
    a = _garment()
    frames = [Image.fromarray(a).convert("P"), Image.fromarray(255 - a).convert("P")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    np.testing.assert_array_equal(to_model_pixels(decode_image(data), "raw"), a)


def test_exif_orientation_is_honoured():
    a = _garment()
    rotated = Image.fromarray(a).transpose(Image.Transpose.ROTATE_90)  # stored sideways...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...with "rotate 90 CW to display"
    data = encode(rotated.convert("RGB"), "JPEG", quality=100, exif=exif)
    out = to_model_pixels(decode_image(data), "raw")
    assert np.abs(out.astype(int) - a).mean() < 3


def test_transparency_is_composited_onto_white():
    # a dark garment drawn on a transparent canvas: a product cut-out
    rgba = np.zeros((100, 60, 4), np.uint8)
    rgba[20:80, 15:45] = (40, 40, 40, 255)
    out = to_model_pixels(decode_image(encode(Image.fromarray(rgba, "RGBA"))), "photo")
    # white background -> negated -> dark; the garment becomes the light part and fills the height
    assert out[0, 0] == 0 and out[14, 14] == 255
    assert (out[:, 14] > 0).sum() == 28


def test_photo_of_dark_shirt_on_white_looks_like_the_dataset():
    photo = np.full((400, 300, 3), 250, np.uint8)
    photo[50:350, 60:240] = (30, 60, 120)  # a navy garment on white
    out = to_model_pixels(decode_image(encode(Image.fromarray(photo), "JPEG")), "auto")
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert out.min() == 0 and out.max() == 255
    assert out[:, :3].max() < 20 and out[14, 14] > 200  # light garment, dark margins, centred


def test_bad_inputs_are_clear():
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"")
    with pytest.raises(ImageError, match="could not be decoded: not a PNG"):
        decode_image(b"GIF89a-not-really")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        decode_image(png(_garment())[:-30])
    with pytest.raises(ImageError, match="preprocess=raw needs a 28x28 image, got 56x56"):
        to_model_pixels(decode_image(encode(Image.new("L", (56, 56)))), "raw")
    with pytest.raises(ImageError, match="preprocess must be one of"):
        to_model_pixels(decode_image(png(_garment())), "fancy")


def test_pixel_bomb_refused_before_decoding():
    bomb = encode(Image.new("L", (8000, 8000)))  # 64 M pixels in a few kB
    assert len(bomb) < 100_000
    with pytest.raises(ImageTooLarge, match="8000x8000 = 64,000,000 pixels; the limit is 25,000,000"):
        decode_image(bomb, max_pixels=25_000_000)


@pytest.mark.realdata
@pytest.mark.slow
def test_restyled_test_images_keep_accuracy(real_data):
    """Upscaled, inverted, tinted, off-centre and JPEG copies stay within 3 points of the raw 28x28 accuracy."""
    art = resolve(str(SHIPPED))
    x, y = real_data.test_images[:2000], real_data.test_labels[:2000]
    raw = (artifact_logits(art, x).argmax(1) == y).mean()
    styled = {name: [] for name in restyled(x[0])}
    for a in x:
        for name, data in restyled(a).items():
            styled[name].append(to_model_pixels(decode_image(data), "auto"))
    for name, px in styled.items():
        acc = (artifact_logits(art, np.stack(px)).argmax(1) == y).mean()
        assert acc >= raw - 0.03, f"{name}: {acc:.4f} vs raw {raw:.4f}"
