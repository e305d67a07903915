"""The `/predict` request contract, in one place: the query parameters and their rules, the multipart
fields, the JSON forms. The Flask view, the fast path (single and batched) and the OpenAPI document
all read it from here, so they cannot disagree."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from urllib.parse import parse_qsl

import numpy as np

from fmnist.images.preprocess import MODES
from fmnist.serving.apierror import APIError, parse_json

TOP_K_MIN, TOP_K_MAX = 1, 10
FILE_FIELDS = ("image", "images")  # multipart: one file in `image` (answer is one object), or several
JSON_FORMS = ("image", "images", "pixels")  # {"image": b64} | {"images": [b64, ...]} | {"pixels": 28x28 or list}


@dataclass(frozen=True)
class PredictQuery:
    top_k: int
    preprocess: str

    @classmethod
    def parse(cls, query_string: str, default_top_k: int) -> "PredictQuery":
        """From a raw query string. A repeated parameter: the first one counts (as in Flask's
        request.args); unknown parameters are ignored. APIError(400) for a bad value."""
        first: dict = {}
        for key, value in parse_qsl(query_string, keep_blank_values=True):
            first.setdefault(key, value)
        return cls(_top_k(first.get("top_k"), default_top_k), _mode(first.get("preprocess")))


def _top_k(raw: "str | None", default: int) -> int:
    return bounded_number("top_k", raw, default, TOP_K_MIN, TOP_K_MAX)


def bounded_number(name: str, raw: "str | None", default, lo, hi, kind=int):
    """A query parameter: absent -> default; not a `kind` or outside lo-hi -> 400 bad_parameter."""
    if raw is None:
        return default
    expected = f"{name} must be {'an integer' if kind is int else 'a number'} {lo}-{hi}"
    try:
        value = kind(raw)
    except ValueError:
        raise APIError(400, "bad_parameter", f"{expected}, got {raw!r}") from None
    if not lo <= value <= hi:  # NaN too
        raise APIError(400, "bad_parameter", f"{expected}, got {value}")
    return value


def _mode(raw: "str | None") -> str:
    if raw is None:
        return "auto"
    if raw not in MODES:
        raise APIError(400, "bad_parameter", f"preprocess must be one of {', '.join(MODES)}, got {raw!r}")
    return raw


def image_files(parts: list) -> "tuple[list, bool] | None":
    """Multipart parts (field, filename, content) -> ([(name, content)], response is a list?) for the
    files in 'image' (first) and 'images'; None when there are none. A text part in those fields is refused
    (other fields are ignored)."""
    texts = sorted({field for field, filename, _ in parts if filename is None and field in FILE_FIELDS})
    if texts:  # `-F images=shirt.png` (a text field) where `-F images=@shirt.png` (a file) was meant
        raise APIError(400, "bad_image", f"form field {texts[0]!r} is text, not a file: send each picture as a file "
                                         f"part with a filename (curl -F '{texts[0]}=@shirt.png')")
    files = [(field, filename, content) for field, filename, content in parts
             if filename is not None and field in FILE_FIELDS]
    if not files:
        return None
    files.sort(key=lambda f: f[0] != "image")  # 'image' files first, then 'images', each in order (stable)
    blobs = [(filename or f"image[{i}]", content) for i, (_, filename, content) in enumerate(files)]
    return blobs, len(files) > 1 or files[0][0] == "images"


def _b64(value, where: str) -> bytes:
    if not isinstance(value, str):
        raise APIError(400, "bad_image", f"{where} must be a base64 string, got {type(value).__name__}")
    if value.startswith("data:"):  # data URL: data:image/png;base64,....
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise APIError(400, "bad_image", f"{where} is not valid base64") from None


def _pixels(value, max_images: int) -> tuple[np.ndarray, bool]:
    """JSON pixels: one 28x28 list of ints 0-255, or a list of them -> (uint8 (N,28,28), many?)."""
    expected = "28 rows of 28 integers 0-255, or a list of such images"
    try:
        arr = np.asarray(value)
    except (ValueError, OverflowError, RecursionError):
        raise APIError(400, "bad_pixels", f"pixels is ragged: expected {expected}") from None
    if arr.dtype == object or arr.dtype.kind not in "iuf" or arr.size == 0:
        raise APIError(400, "bad_pixels", f"pixels must be numbers: expected {expected}")
    many = arr.ndim == 3
    if arr.ndim not in (2, 3) or arr.shape[-2:] != (28, 28):
        raise APIError(400, "bad_pixels", f"pixels has shape {list(arr.shape)}: expected {expected}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr) & (arr == np.round(arr))):
        raise APIError(400, "bad_pixels", f"pixels must be whole numbers: expected {expected}")
    if arr.min() < 0 or arr.max() > 255:
        raise APIError(400, "bad_pixels", f"pixel values range {arr.min()}..{arr.max()}: expected 0-255")
    arr = arr.astype(np.uint8).reshape(-1, 28, 28)
    if len(arr) > max_images:
        raise APIError(400, "too_many_images", f"{len(arr)} images in one request; the limit is {max_images}")
    return arr, many


def json_inputs(raw: bytes, max_images: int) -> "tuple[list, np.ndarray | None, bool]":
    """A JSON /predict body -> (encoded images as [(name, bytes)], raw pixels (N,28,28) or None, response is a
    list?): {"image": b64} | {"images": [b64, ...]} | {"pixels": 28x28 or a list of them}. APIError 400."""
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise APIError(400, "bad_json", 'expected a JSON object with "image", "images" or "pixels"')
    if "image" in body:
        return [("image", _b64(body["image"], "image"))], None, False
    if "images" in body:
        imgs = body["images"]
        if not isinstance(imgs, list) or not imgs:
            raise APIError(400, "bad_image", '"images" must be a non-empty list of base64 strings')
        if len(imgs) > max_images:
            raise APIError(400, "too_many_images", f"{len(imgs)} images in one request; the limit is {max_images}")
        return [(f"images[{i}]", _b64(v, f"images[{i}]")) for i, v in enumerate(imgs)], None, True
    if "pixels" in body:
        arr, many = _pixels(body["pixels"], max_images)
        return [], arr, many
    raise APIError(400, "missing_image", 'JSON body needs "image" (base64), "images" (list) or "pixels"')


def openapi_parameters(default_top_k: int = 3) -> list:
    """The query parameters of /predict as OpenAPI parameter objects."""
    return [
        {"name": "top_k", "in": "query", "description": "how many classes to list in top_k",
         "schema": {"type": "integer", "minimum": TOP_K_MIN, "maximum": TOP_K_MAX, "default": default_top_k}},
        {"name": "preprocess", "in": "query", "schema": {"type": "string", "enum": list(MODES), "default": "auto"},
         "description": "raw: 28x28 as the dataset gives it (light garment on dark); photo: converted as the "
                        "Fashion-MNIST paper built the dataset; auto: raw for 28x28, photo otherwise"},
    ]
