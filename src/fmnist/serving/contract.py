"""The `/predict` request contract, in one place: the query parameters and their rules, the multipart
fields, the JSON forms. The Flask view, the fast path (single and batched) and the OpenAPI document
all read it from here, so they cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from fmnist.preprocess import MODES
from fmnist.serving.apierror import APIError

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
    files in 'image' (first) and 'images'; None when there are none."""
    files = [(field, filename, content) for field, filename, content in parts
             if filename is not None and field in FILE_FIELDS]
    if not files:
        return None
    files.sort(key=lambda f: f[0] != "image")  # 'image' files first, then 'images', each in order (stable)
    blobs = [(filename or f"image[{i}]", content) for i, (_, filename, content) in enumerate(files)]
    return blobs, len(files) > 1 or files[0][0] == "images"


def openapi_parameters(default_top_k: int = 3) -> list:
    """The query parameters of /predict as OpenAPI parameter objects."""
    return [
        {"name": "top_k", "in": "query", "description": "how many classes to list in top_k",
         "schema": {"type": "integer", "minimum": TOP_K_MIN, "maximum": TOP_K_MAX, "default": default_top_k}},
        {"name": "preprocess", "in": "query", "schema": {"type": "string", "enum": list(MODES), "default": "auto"},
         "description": "raw: 28x28 as the dataset gives it (light garment on dark); photo: converted as the "
                        "Fashion-MNIST paper built the dataset; auto: raw for 28x28, photo otherwise"},
    ]
