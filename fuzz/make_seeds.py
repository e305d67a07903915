"""Write the seed corpus of every fuzz target, kept in the repository: `python fuzz/make_seeds.py`.

Small, valid inputs of every form the server reads (each image format and mode it accepts, the multipart
shapes clients send, the JSON forms of /predict, Open Inference Protocol requests with and without binary
data), from which the fuzzers mutate."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent / "corpus"
BOUNDARY = b"fuzzboundary"


def put(target: str, name: str, data: bytes) -> None:
    folder = ROOT / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data)


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **kw)
    return out.getvalue()


def multipart(parts: list) -> bytes:
    """[(header lines, content)] -> a body with BOUNDARY."""
    dash = b"--" + BOUNDARY
    return b"".join(dash + b"\r\n" + head + b"\r\n\r\n" + content + b"\r\n" for head, content in parts) + dash + b"--\r\n"


def v2(head: dict, binary: bytes = b"") -> bytes:
    """fuzz/targets.py's v2 form: 2 bytes of Inference-Header-Content-Length (0: none), then the body."""
    text = json.dumps(head).encode()
    return (len(text) if binary else 0).to_bytes(2, "little") + text + binary


def main() -> None:
    rng = np.random.default_rng(7)
    garment = np.zeros((28, 28), np.uint8)
    garment[4:24, 8:20] = 200
    photo = Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), "RGB")
    images = {
        "gray28.png": encode(Image.fromarray(garment, "L"), "PNG"),
        "rgba.png": encode(photo.convert("RGBA"), "PNG"),
        "photo.jpg": encode(photo, "JPEG", quality=70),
        "pal.gif": encode(photo.convert("P"), "GIF"),
        "rgb.bmp": encode(photo, "BMP"),
        "lossy.webp": encode(photo, "WEBP", quality=50),
        "gray.tiff": encode(Image.fromarray(garment, "L").resize((40, 40)), "TIFF"),
        "i16.png": encode(Image.fromarray(garment.astype(np.uint16) * 256), "PNG"),
        "mono.png": encode(Image.fromarray(garment).convert("1"), "PNG"),
    }
    for name, data in images.items():
        put("image", name, data)

    png = images["gray28.png"]
    disposition = b'Content-Disposition: form-data; name="%s"; filename="%s"'
    put("multipart", "one.txt", multipart([(disposition % (b"image", b"a.png") + b"\r\nContent-Type: image/png", png)]))
    put("multipart", "many.txt", multipart([(disposition % (b"images", b"a.png"), png),
                                            (disposition % (b"images", b"b.png"), b"xx"),
                                            (b'Content-Disposition: form-data; name="note"', b"hello")]))
    put("multipart", "params.txt", multipart([(b'Content-Disposition: form-data; name=image; filename="a \\"q\\".png"',
                                               png)]))
    put("multipart", "preamble.txt",
        b"preamble\r\n" + multipart([(b'content-disposition: form-data; name="x"', b"")]) + b"epilogue")

    put("json", "pixels.json", json.dumps({"pixels": garment.tolist()}).encode())
    put("json", "pixels2.json", json.dumps({"pixels": [garment.tolist(), garment.tolist()]}).encode())
    put("json", "image.json", json.dumps({"image": base64.b64encode(png).decode()}).encode())
    put("json", "images.json",
        json.dumps({"images": ["data:image/png;base64," + base64.b64encode(png).decode()]}).encode())
    put("json", "floats.json", json.dumps({"pixels": (garment / 1.0).tolist()}).encode())

    tensor = {"name": "input", "datatype": "UINT8", "shape": [1, 28, 28], "data": garment.reshape(-1).tolist()}
    outputs = [{"name": "probabilities"}, {"name": "labels", "parameters": {"binary_data": True}}]
    put("v2", "uint8.bin", v2({"inputs": [tensor], "outputs": outputs}))
    x = ((garment / 255.0 - 0.286) / 0.353).astype(np.float32)
    fp32 = {**tensor, "datatype": "FP32", "shape": [1, 1, 28, 28], "data": x.reshape(-1).tolist()}
    put("v2", "fp32.bin", v2({"id": "a", "inputs": [fp32]}))
    binary = {"name": "input", "datatype": "FP32", "shape": [1, 1, 28, 28], "parameters": {"binary_data_size": 3136}}
    put("v2", "fp32-binary.bin", v2({"inputs": [binary], "parameters": {"binary_data_output": True}},
                                    x.astype("<f4").tobytes()))
    binary = {"name": "input", "datatype": "UINT8", "shape": [2, 28, 28], "parameters": {"binary_data_size": 1568}}
    put("v2", "uint8-binary.bin", v2({"inputs": [binary]}, garment.tobytes() * 2))


if __name__ == "__main__":
    main()
