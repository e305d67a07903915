"""Helpers that make test images in every format and mode the server must accept."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def png(pixels: np.ndarray) -> bytes:
    return encode(Image.fromarray(np.asarray(pixels, dtype=np.uint8), "L"))


def restyled(pixels: np.ndarray) -> dict[str, bytes]:
    """One dataset image (light on dark, 28x28) restyled the ways users' pictures differ from it."""
    a = np.asarray(pixels, dtype=np.uint8)
    light = Image.fromarray(a, "L")
    dark_on_white = Image.fromarray(255 - a, "L")
    tinted = Image.merge("RGB", [Image.fromarray((255 - (255 - a) * f).astype(np.uint8)) for f in (0.2, 0.5, 0.9)])
    canvas = Image.new("L", (160, 140), 255)
    canvas.paste(dark_on_white.resize((56, 56), Image.Resampling.BICUBIC), (10, 70))
    return {
        "upscaled": encode(light.resize((224, 224), Image.Resampling.BICUBIC)),
        "inverted": encode(dark_on_white.resize((112, 112), Image.Resampling.BICUBIC)),
        "tinted": encode(tinted.resize((100, 100), Image.Resampling.BICUBIC)),
        "off-centre": encode(canvas),
        "jpeg": encode(dark_on_white.resize((200, 200), Image.Resampling.BICUBIC).convert("RGB"), "JPEG", quality=75),
    }


def photo(pixels: np.ndarray, size: "tuple[int, int]" = (2400, 1800), quality: int = 85) -> bytes:
    """A dataset garment as a phone photo: dark on a light, unevenly lit page, filling half of a big JPEG."""
    w, h = size
    side = min(w, h) // 2
    garment = Image.fromarray(255 - np.asarray(pixels, dtype=np.uint8), "L").resize((side, side), Image.Resampling.BICUBIC)
    light = np.linspace(235, 200, w, dtype=np.float32)[None, :] + np.linspace(0, -15, h, dtype=np.float32)[:, None]
    page = Image.fromarray(light.astype(np.uint8), "L")
    mask = garment.point(lambda v: 255 if v < 200 else 0)
    page.paste(garment, ((w - side) // 2, (h - side) // 3), mask)
    return encode(page.convert("RGB"), "JPEG", quality=quality)


def png16_rgba(width: int, height: int) -> bytes:
    """A 16-bit RGBA PNG (a grey box on transparent black), written row by row: 25 megapixels in ~100 kB,
    which Pillow decodes to width x height x 4 bytes."""
    import struct
    import zlib

    row = np.zeros((width, 4), ">u2")
    row[:, 3] = 65535
    box = row.copy()
    box[width // 4: 3 * width // 4, :3] = 40000
    plain, boxed = b"\0" + row.tobytes(), b"\0" + box.tobytes()
    z = zlib.compressobj(1)
    data = b"".join(z.compress(boxed if height // 4 < y < 3 * height // 4 else plain) for y in range(height)) + z.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 6, 0, 0, 0))
            + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def heavy_pictures(side: int = 5000) -> dict[str, bytes]:
    """Small files that decode to side x side pixels (25 MP by default): what a careless or hostile client
    sends to make a server decode as much as it can for as few bytes as it can."""
    return {"png16": png16_rgba(side, side), "gif": encode(Image.new("P", (side, side)), "GIF"),
            "webp": encode(Image.new("RGB", (side, side), (200, 200, 200)), "WEBP", lossless=True)}
