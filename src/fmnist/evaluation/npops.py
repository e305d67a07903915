"""The lesson's operations in plain NumPy: conv2d, ReLU and max-pool, checked against torch in the tests."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# The seed's worked example: this filter responds to vertical edges (dark left, light right).
VERTICAL_EDGE = np.array([[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]], dtype=np.float32)


def conv2d(x: np.ndarray, w: np.ndarray, bias: "np.ndarray | None" = None, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Cross-correlation as in torch.nn.functional.conv2d.

    x: (C, H, W) or (H, W); w: (O, C, k, k) or (k, k). Returns (O, H', W') (or (H', W') for 2-D in and w).
    Each output value is the sum of the filter times the window under it: slide, multiply, add.
    """
    squeeze = x.ndim == 2 and w.ndim == 2
    x = np.asarray(x, dtype=np.float32)
    w = np.asarray(w, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    if w.ndim == 2:
        w = w[None, None]
    if w.shape[1] != x.shape[0]:
        raise ValueError(f"filter expects {w.shape[1]} input channels, image has {x.shape[0]}")
    if padding:
        x = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    kh, kw = w.shape[2:]
    windows = sliding_window_view(x, (kh, kw), axis=(1, 2))[:, ::stride, ::stride]  # (C, H', W', kh, kw)
    out = np.einsum("chwij,ocij->ohw", windows, w)  # (O, H', W')
    if bias is not None:
        out = out + np.asarray(bias, dtype=np.float32)[:, None, None]
    return out[0] if squeeze else out


def relu(x: np.ndarray) -> np.ndarray:
    """max(0, x): negative responses become 0, positive ones pass unchanged."""
    return np.maximum(x, 0)


def max_pool2d(x: np.ndarray, kernel: int = 2, stride: "int | None" = None) -> np.ndarray:
    """Keep the strongest value of each kernel x kernel window (floor mode, like torch)."""
    stride = stride or kernel
    windows = sliding_window_view(x, (kernel, kernel), axis=(-2, -1))[..., ::stride, ::stride, :, :]
    return windows.max(axis=(-2, -1))
