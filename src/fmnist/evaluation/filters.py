"""`fmnist filters`: what the first convolution layer learned and what it does to one image."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist import data as fdata
from fmnist.errors import InvalidValue
from fmnist.evaluation import npops
from fmnist.evaluation.metrics import softmax
from fmnist.images.preprocess import load_image_pixels
from fmnist.labels import CLASSES
from fmnist.registry import resolve


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_image(spec: str, data_dir=None) -> tuple[np.ndarray, str]:
    """`test:N` (test-set image N) or an image file -> (28x28 uint8 pixels, a title)."""
    if spec.startswith("test:"):
        try:
            k = int(spec[5:])
        except ValueError:
            raise InvalidValue(f"bad image {spec!r}: expected test:N with N an integer 0-9999") from None
        ds = fdata.load(data_dir, allow_download=False)
        if not 0 <= k < len(ds.test_labels):
            raise InvalidValue(f"bad image {spec!r}: the test set has images 0-{len(ds.test_labels) - 1}")
        return ds.test_images[k], f"test image {k} (true: {CLASSES[ds.test_labels[k]]})"
    if not Path(spec).is_file():
        raise FileNotFoundError(f"image {spec!r} not found (give a file, or test:N for a test-set image)")
    return load_image_pixels(spec), Path(spec).name


def first_conv_stages(model):
    """The first Conv2d of model.features and the first ReLU and MaxPool2d after it."""
    from torch import nn

    layers = list(model.features.modules())[1:] if hasattr(model, "features") else []
    conv = next((m for m in layers if isinstance(m, nn.Conv2d)), None)
    if conv is None:
        raise InvalidValue("this model has no convolution layer to explain (the MLP sees only flattened pixels); pick a CNN")
    after = layers[layers.index(conv) + 1 :]
    relu = next((m for m in after if isinstance(m, nn.ReLU)), None)
    pool = next((m for m in after if isinstance(m, nn.MaxPool2d)), None)
    return conv, relu, pool


def _grid(plt, maps: np.ndarray, title: str, path: Path, cmap: str = "viridis", max_maps: int = 32) -> Path:
    maps = maps[:max_maps]
    cols = 8
    rows = -(-len(maps) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.4 + 0.5), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(maps):
            ax.imshow(maps[i], cmap=cmap)
            ax.set_title(str(i), fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def explain(model_ref: str, image: str, out: Path, registry=None, data_dir=None) -> list[Path]:
    """Write input, filters, feature maps (conv / ReLU / pool) and the NumPy lesson PNGs; return the paths."""
    import torch

    from fmnist.artifact import load_model

    out.mkdir(parents=True, exist_ok=True)
    art = resolve(model_ref, registry)
    model = load_model(art)
    pixels, title = read_image(image, data_dir)
    conv, relu, pool = first_conv_stages(model)

    captured: dict[str, np.ndarray] = {}

    def keep(name):
        def hook(_m, _inp, output):
            captured.setdefault(name, output[0].detach().numpy().copy())
        return hook

    hooks = [conv.register_forward_hook(keep("conv"))]
    if relu is not None:
        hooks.append(relu.register_forward_hook(keep("relu")))
    if pool is not None:
        hooks.append(pool.register_forward_hook(keep("pool")))
    x = torch.from_numpy(art.preprocessing.normalize(pixels))
    with torch.no_grad():
        probs = softmax(model(x).numpy())[0]
    for h in hooks:
        h.remove()

    plt = _plt()
    written = []
    pred = int(probs.argmax())
    fig, ax = plt.subplots(figsize=(3, 3.3))
    ax.imshow(pixels, cmap="gray", vmin=0, vmax=255)
    ax.set_title(f"{title}\npredicted {CLASSES[pred]} ({probs[pred]:.1%})", fontsize=8)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "input.png", dpi=110)
    plt.close(fig)
    written.append(out / "input.png")

    w = conv.weight.detach().numpy()[:, 0]  # (C_out, k, k): one grayscale filter per output channel
    written.append(_grid(plt, w, f"{art.ref}: first-layer filters ({w.shape[0]} of {w.shape[1]}x{w.shape[2]})",
                         out / "filters.png", cmap="RdBu_r"))
    labels = {"conv": "after convolution", "relu": "after ReLU", "pool": "after max-pool"}
    for key, label in labels.items():
        if key in captured:
            m = captured[key]
            written.append(_grid(plt, m, f"{art.ref}: feature maps {label} {tuple(m.shape)}",
                                 out / f"feature_maps_{key}.png"))

    # The lesson's worked example in plain NumPy: vertical-edge filter -> ReLU -> 2x2 max-pool.
    img = pixels.astype(np.float32) / 255.0
    edges = npops.conv2d(img, npops.VERTICAL_EDGE, padding=1)
    rect = npops.relu(edges)
    pooled = npops.max_pool2d(rect, 2)
    fig, axes = plt.subplots(1, 4, figsize=(11, 3.2))
    for ax, (arr, t) in zip(axes, [(img, "input 28x28"), (edges, "vertical-edge conv 28x28"),
                                   (rect, "ReLU"), (pooled, "2x2 max-pool 14x14")]):
        ax.imshow(arr, cmap="gray" if arr is img else "viridis")
        ax.set_title(t, fontsize=9)
        ax.axis("off")
    fig.suptitle("The lesson in NumPy: [[-1,0,1],[-1,0,1],[-1,0,1]] finds vertical edges", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "lesson_numpy.png", dpi=110)
    plt.close(fig)
    written.append(out / "lesson_numpy.png")
    return written
