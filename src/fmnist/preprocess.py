"""One place for pixel scaling and normalisation, shared by training, evaluation and serving."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

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

    def denormalize(self, x: np.ndarray) -> np.ndarray:
        """Inverse of normalize, back to uint8 (N, 28, 28) pixels (for pictures of inputs)."""
        arr = np.asarray(x, dtype=np.float32).reshape(-1, *self.input_size)
        return np.clip((arr * self.std + self.mean) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def dataset_stats(images: np.ndarray) -> tuple[float, float]:
    """Mean and std of uint8 images on the 0-1 scale (float64 accumulation)."""
    x = images.astype(np.float64) / 255.0
    return float(x.mean()), float(x.std())


def load_image_pixels(path: str) -> np.ndarray:
    """Read an image file as 28x28 uint8 pixels in dataset polarity.

    A 28x28 grayscale file is taken as is (as the dataset stores it); anything else is
    converted to grayscale and resized. The photo -> dataset conversion is the serving
    layer's `photo` preprocessing.
    """
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("L")
        if im.size != (28, 28):
            im = im.resize((28, 28), Image.Resampling.LANCZOS)
        return np.asarray(im, dtype=np.uint8)
