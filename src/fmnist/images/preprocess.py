"""From what a user sends to what the model sees, shared by training, evaluation and serving.

- `Preprocessing`: the artifact's normalisation, `(pixel / 255 - mean) / std`.
- Decoding (`open_image`, `load_image`, `decode_image`): header checks before any pixel is decoded, EXIF
  orientation, JPEGs decoded at a reduced scale when the conversion needs no more.
- Conversion (`to_model_pixels`, `photo_to_dataset`): any picture -> a 28x28 in the dataset's polarity, the way
  the dataset itself was made (trim, resize, centre, grayscale, negate, stretch), with a background plane and
  line drawings filled; a 28x28 image as the dataset gives it passes unchanged.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from fmnist.config import Settings
from fmnist.errors import Refused

# Fashion-MNIST training-set statistics on the 0-1 scale (recomputed from the data by
# `fmnist train`, which stores its own values in the artifact's manifest).
DEFAULT_MEAN = 0.2860
DEFAULT_STD = 0.3530


@dataclass(frozen=True)
class Preprocessing:
    """How raw 0-255 grayscale pixels become the model's input tensor: (pixel / 255 - mean) / std."""

    input_size: tuple = (28, 28)
    mean: float = DEFAULT_MEAN
    std: float = DEFAULT_STD
    scale: str = "pixel / 255"
    channels: int = 1
    layout: str = "NCHW"
    polarity: str = "light garment on dark background (as in the dataset)"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if "input_size" in known:
            known["input_size"] = tuple(known["input_size"])
        return cls(**known)

    def normalize(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 (N, 28, 28) or (28, 28) pixels 0-255 -> float32 (N, 1, 28, 28), normalised."""
        arr = np.asarray(pixels)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim == 4 and arr.shape[1] == 1:
            arr = arr[:, 0]
        if arr.ndim != 3 or tuple(arr.shape[1:]) != tuple(self.input_size):
            raise ValueError(
                f"expected pixels of shape (N, {self.input_size[0]}, {self.input_size[1]}), got {arr.shape}"
            )
        x = arr.astype(np.float32) / np.float32(255.0)
        x = (x - np.float32(self.mean)) / np.float32(self.std)
        return x[:, None, :, :]



def dataset_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and std of uint8 images on the 0-1 scale (float64 accumulation)."""
    x = images.astype(np.float64) / 255.0
    return float(x.mean()), float(x.std())


# --------------------------------------------------------------------------- decoding images

ALLOWED_FORMATS = ("PNG", "JPEG", "MPO", "GIF", "BMP", "DIB", "WEBP", "TIFF")
MODES = ("auto", "raw", "photo")
TRIM_TOLERANCE = 0.10  # "close to the corner colour": within 10 % of full intensity (the paper says 5 %; JPEG noise needs more)


class ImageError(Refused, ValueError):
    """An input image that cannot be used: says what was wrong and what is expected (a refusal: 400
    bad_image, or 413 image_too_large)."""

    status = 400
    code = "bad_image"

    def __init__(self, message: str):
        Refused.__init__(self, type(self).status, type(self).code, message)


class ImageTooLarge(ImageError):
    status = 413
    code = "image_too_large"


_ALLOWED: "tuple[str, ...] | None" = None
# where Pillow finds an orientation in a PNG (EXIF chunk, ImageMagick's text chunk, XMP): none of them, nothing to rotate
_ORIENTATION_KEYS = frozenset({"exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp"})


def _allowed_formats() -> tuple:
    """The allowed formats this Pillow build can open (plugins register on Image.init())."""
    global _ALLOWED
    if _ALLOWED is None:
        from PIL import Image

        Image.init()
        _ALLOWED = tuple(f for f in ALLOWED_FORMATS if f in Image.OPEN)
    return _ALLOWED


def open_image(data: bytes, max_pixels: int = Settings.max_image_pixels, name: str = "image"):
    """Bytes -> a PIL image whose header is read and checked (format, size, pixel limit); no pixel decoded.

    Cheap whatever the picture's size (tens of microseconds): the server reads every image's size this way
    before deciding where to decode it."""
    import io

    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageError(f"{name} is empty (0 bytes): send a PNG, JPEG, GIF, BMP, WebP or TIFF file")
    try:
        im = Image.open(io.BytesIO(data), formats=_allowed_formats())
    except UnidentifiedImageError:
        raise ImageError(
            f"{name} could not be decoded: not a PNG, JPEG, GIF, BMP, WebP or TIFF image ({len(data)} bytes)"
        ) from None
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"{name} is too large: {e}") from None
    except Exception as e:  # Pillow raises many types on malformed headers
        raise ImageError(f"{name} could not be decoded ({e.__class__.__name__}: {e})") from None
    w, h = im.size  # from the header: nothing is decoded yet
    if w < 1 or h < 1:
        raise ImageError(f"{name} has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ImageTooLarge(f"{name} is {w}x{h} = {w * h:,} pixels; the limit is {max_pixels:,}")
    return im


def _draft_request(im, work_side: "int | None") -> "tuple[int, int] | None":
    """The size to ask a big JPEG's draft mode for (None: decoded whole), in the picture's own proportions:
    draft keeps both sides at least the request."""
    w, h = im.size
    if not work_side or im.format not in ("JPEG", "MPO") or max(w, h) < 2 * work_side:
        return None
    long_side = max(w, h)
    return -(-w * work_side // long_side), -(-h * work_side // long_side)


def decoded_pixels(im, work_side: "int | None" = None) -> int:
    """How many pixels `load_image(im, work_side=...)` will decode: the header's, or a JPEG's draft scale's
    (the largest of 1, 1/2, 1/4, 1/8 that keeps both sides at least the request)."""
    w, h = im.size
    request = _draft_request(im, work_side)
    if request is None:
        return w * h
    scale = max(s for s in (1, 2, 4, 8) if -(-w // s) >= request[0] and -(-h // s) >= request[1])
    return -(-w // scale) * -(-h // scale)


def load_image(im, name: str = "image", work_side: "int | None" = None):
    """An opened image -> its pixels: first frame, EXIF orientation applied.

    With `work_side`, a JPEG larger than that is decoded at the smallest of its built-in scales (1/2, 1/4,
    1/8: Pillow's draft mode) that still leaves its long side at least `work_side` pixels, since the
    conversion works at that size anyway: a 12-megapixel photo decodes at 500x375 instead of 4000x3000.
    Other formats have no such mode and decode whole."""
    from PIL import Image, ImageOps

    try:
        request = _draft_request(im, work_side)
        if request is not None:
            im.draft(im.mode, request)
        im.seek(0)
        im.load()
        if im.format != "PNG" or _ORIENTATION_KEYS & im.info.keys():  # a PNG says so in one of these chunks
            ImageOps.exif_transpose(im, in_place=True)  # no copy when there is nothing to rotate
    except Image.DecompressionBombError as e:
        raise ImageTooLarge(f"{name} is too large: {e}") from None
    except Exception as e:
        raise ImageError(f"{name} is truncated or corrupt ({e.__class__.__name__}: {e})") from None
    return im


def decode_image(data: bytes, max_pixels: int = Settings.max_image_pixels, name: str = "image", work_side: "int | None" = None):
    """Bytes -> a PIL image, first frame, EXIF orientation applied; size checked before decoding pixels.
    `work_side`: see load_image (for to_model_pixels, which works at that size anyway)."""
    return load_image(open_image(data, max_pixels, name), name, work_side)


def _flatten(im):
    """Any mode -> 'L' or 'RGB', transparency composited onto white, 16-bit scaled (not clipped)."""
    from PIL import Image

    mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info) or (
        mode in ("L", "RGB") and "transparency" in im.info
    ):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        white.alpha_composite(rgba)
        return white.convert("RGB")
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        if mode != "F" and not mode.startswith("I;16") and arr.max() <= 255:
            top = 255.0
        return Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if mode in ("L", "RGB"):
        return im
    if mode == "1":
        return im.convert("L")
    return im.convert("RGB")  # P without transparency, CMYK, YCbCr, LAB, HSV


def _background(rgb: np.ndarray) -> np.ndarray:
    """The page behind the garment, per pixel (H, W, 3) float32: a plane fitted to the image's border.

    A flat background gives a constant; a photo's lighting gradient gives a slope. Border pixels far from
    the corners' median colour (a garment touching the edge) are left out of the fit; with too few left,
    the background is that median colour.
    """
    h, w, _ = rgb.shape
    corners = rgb[[0, 0, -1, -1], [0, -1, 0, -1]].astype(np.float32)
    median = np.median(corners, axis=0)
    ys = np.concatenate([np.zeros(w), np.full(w, h - 1), np.arange(h), np.arange(h)]).astype(np.int64)
    xs = np.concatenate([np.arange(w), np.arange(w), np.zeros(h), np.full(h, w - 1)]).astype(np.int64)
    border = rgb[ys, xs].astype(np.float32)
    keep = np.abs(border - median).max(axis=1) <= 3 * TRIM_TOLERANCE * 255
    if keep.sum() < 0.25 * len(border) or min(h, w) < 3:
        return np.broadcast_to(median, rgb.shape).astype(np.float32)
    a = np.stack([np.ones(keep.sum()), xs[keep] / max(w - 1, 1), ys[keep] / max(h - 1, 1)], axis=1)
    coef, *_ = np.linalg.lstsq(a, border[keep], rcond=None)  # (3, 3): constant, x slope, y slope per channel
    gx = (np.arange(w, dtype=np.float32) / max(w - 1, 1))[None, :, None]
    gy = (np.arange(h, dtype=np.float32) / max(h - 1, 1))[:, None, None]
    return (coef[0] + gx * coef[1] + gy * coef[2]).astype(np.float32)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """A small bool mask with every region it encloses filled (a flood fill from the border; for 28x28 masks)."""
    ink = np.pad(mask, 1)
    outside = np.zeros_like(ink)
    outside[0, :] = outside[-1, :] = outside[:, 0] = outside[:, -1] = True
    while True:  # grow the outside from the border through pixels that are not in the mask
        grown = outside.copy()
        grown[1:] |= outside[:-1]
        grown[:-1] |= outside[1:]
        grown[:, 1:] |= outside[:, :-1]
        grown[:, :-1] |= outside[:, 1:]
        grown &= ~ink
        if (grown == outside).all():
            return ~outside[1:-1, 1:-1]
        outside = grown


WORK_SIDE = 256  # a larger picture is reduced by an integer factor to at most this many pixels a side first:
# accuracy is flat from 64 to 1024 px (bench/photo_bench.py sizes), cost is not
EXTRACT = "grabcut"  # how a picture on a busy background has its garment cut out (fmnist.images.foreground.METHODS)
LINE_ART_INK = 0.45  # a converted picture whose strokes cover less than this of their outline is a line drawing
LINE_ART_FILL = 110  # the level its enclosed inside gets (mid-grey fabric, below the strokes)


def fill_line_art(pixels: np.ndarray) -> np.ndarray:
    """A converted line drawing (outline strokes only) gets its inside filled, as the dataset's garments are.

    The strokes are closed by a one-pixel dilation first, so a gap from downsampling does not let the
    outside in. Pictures with filled garments (most ink inside the outline) are returned unchanged.
    """
    ink = pixels > 40
    if not ink.any():
        return pixels
    closed = ink.copy()
    closed[1:] |= ink[:-1]
    closed[:-1] |= ink[1:]
    closed[:, 1:] |= ink[:, :-1]
    closed[:, :-1] |= ink[:, 1:]
    inside = fill_holes(closed)
    if ink.sum() >= LINE_ART_INK * inside.sum():
        return pixels
    holes = inside & ~closed
    return np.where(holes, np.maximum(pixels, LINE_ART_FILL), pixels).astype(np.uint8)


def _gray(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


def photo_to_dataset(im, work_side: int = WORK_SIDE, extract: "str | None" = EXTRACT, info: "dict | None" = None
                     ) -> np.ndarray:
    """Convert a picture the way Fashion-MNIST was made (Xiao et al. 2017, arXiv:1708.07747, sec. 2).

    Trim the border close to the background colour, resize the longest edge to 28 and sharpen, centre on a
    28x28 canvas of the background colour, grayscale, negate when the garment is darker than the background
    (so it is light on dark, as in the dataset), stretch the contrast to 0-255. The background is a plane
    fitted to the border (a lighting gradient is background too); inside the trimmed box, pixels close to
    it are set to its mean, so a gradient, paper texture or JPEG noise does not become garment. A line
    drawing (strokes only) has its inside filled (`fill_line_art`). A picture over WORK_SIDE pixels a side
    is box-reduced to it first (the result is 28x28: the conversion's arrays stay under a few MB whatever the
    picture's size, and its time under ~10 ms).

    A picture on a busy background (a photograph: the border is not a plain page) has its garment cut out
    first by `extract` (fmnist.images.foreground; None: never), and laid on a plain page that contrasts with it.
    `info`, when given, gets "extract_s" (seconds) and "extracted" (a garment was found) for such pictures.
    """
    from PIL import Image, ImageFilter

    from fmnist.images import foreground

    im = im.convert("RGB")
    if max(im.size) > work_side:  # trim and background on a box-filtered copy: bounded memory and time
        im = im.reduce(-(-max(im.size) // work_side))
    rgb = np.asarray(im, dtype=np.float32)
    bgp = _background(rgb)
    far = None
    if extract and foreground.is_busy(rgb, bgp):
        t0 = time.perf_counter()
        mask = foreground.extract(rgb, extract)
        if mask is not None:  # the garment alone, on a page of the opposite lightness
            page = np.float32(0.0 if float(_gray(rgb[mask]).mean()) > 127 else 255.0)
            rgb = np.where(mask[..., None], rgb, page)
            bgp = np.full_like(rgb, page)
            far = mask
        if info is not None:
            info["extract_s"], info["extracted"] = time.perf_counter() - t0, mask is not None
    if far is None:
        far = np.abs(rgb - bgp).max(axis=2) > TRIM_TOLERANCE * 255
    if far.any():
        ys, xs = np.nonzero(far)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    else:
        y0, y1, x0, x1 = 0, rgb.shape[0], 0, rgb.shape[1]
    box, box_far = rgb[y0:y1, x0:x1], far[y0:y1, x0:x1]
    bg = bgp[y0:y1, x0:x1].reshape(-1, 3).mean(axis=0)
    bg_gray = float(_gray(bg))
    if far.any():  # negate when the garment is darker than the page around it (a product photo on white)
        negate = float((_gray(rgb[far]) - _gray(bgp[far])).mean()) < 0
        box = np.where(box_far[..., None], box, bg)
    else:
        negate = bg_gray > 127
    crop = Image.fromarray(np.clip(box + 0.5, 0, 255).astype(np.uint8), "RGB")
    w, h = crop.size
    scale = 28.0 / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    small = crop.resize((nw, nh), Image.Resampling.LANCZOS, reducing_gap=3.0 if scale < 0.5 else None)
    if scale < 1.0:  # the paper sharpens after subsampling (Gaussian, radius and sigma 1)
        small = small.filter(ImageFilter.UnsharpMask(radius=1, percent=50, threshold=0))
    canvas = Image.new("RGB", (28, 28), tuple(int(v + 0.5) for v in bg))
    canvas.paste(small, ((28 - nw) // 2, (28 - nh) // 2))
    gray = np.asarray(canvas.convert("L"), dtype=np.float32)
    bg_level = bg_gray
    if negate:
        gray = 255.0 - gray
        bg_level = 255.0 - bg_gray
    # the background is the floor: resampling ringing below it must not lift the background off 0
    lo = bg_level if far.any() else float(gray.min())
    hi = float(gray.max())
    if hi - lo < 1.0:
        return np.zeros((28, 28), np.uint8)
    return fill_line_art(np.clip((gray - lo) * (255.0 / (hi - lo)) + 0.5, 0, 255).astype(np.uint8))


def to_model_pixels(im, mode: str = "auto", size=(28, 28), work_side: int = WORK_SIDE,
                    extract: "str | None" = EXTRACT, info: "dict | None" = None) -> np.ndarray:
    """A decoded image -> 28x28 uint8 pixels in dataset polarity.

    raw: the image is already as the dataset gives it (28x28, light garment on dark);
    photo: any picture, converted as the dataset was built; auto: raw for 28x28, else photo.
    `extract` and `info`: see photo_to_dataset.
    """
    if mode not in MODES:
        raise ImageError(f"preprocess must be one of {', '.join(MODES)}, got {mode!r}")
    if mode != "raw" and max(im.size) > work_side and im.mode in ("RGB", "RGBA", "L", "LA"):
        im = im.reduce(-(-max(im.size) // work_side))  # before flattening: a big RGBA composites at work size
    flat = _flatten(im)
    if mode == "raw" or (mode == "auto" and flat.size == tuple(size)):
        if flat.size != tuple(size):
            raise ImageError(
                f"preprocess=raw needs a {size[0]}x{size[1]} image, got {flat.size[0]}x{flat.size[1]}; "
                "use preprocess=photo (or auto) for other pictures"
            )
        return np.asarray(flat if flat.mode == "L" else flat.convert("L"), dtype=np.uint8)
    return photo_to_dataset(flat, work_side, extract, info)


def load_image_pixels(path: str, mode: str = "auto") -> np.ndarray:
    """Read an image file as 28x28 uint8 pixels in dataset polarity (the serving preprocessing)."""
    with open(path, "rb") as f:
        return to_model_pixels(decode_image(f.read(), name=str(path)), mode)
