"""The batch summary's figure (batch/figure.py): drawn with Pillow from the summary alone, every panel there."""
import numpy as np
from PIL import Image

from fmnist.batch.figure import PANEL_W, REF, RUN, write_figure
from fmnist.labels import CLASSES


def _summary(labelled: bool) -> dict:
    rng = np.random.default_rng(0)
    live = rng.dirichlet(np.ones(10))
    edges = np.linspace(0, 1, 21).tolist()
    counts = rng.integers(0, 500, 20).tolist()
    s = {"model": {"name": "smallcnn", "version": "6"}, "n": 1234, "errors": 2,
         "confidence_histogram": {"edges": edges, "counts": counts},
         "drift": {"status": "ok", "window": {"class_distribution": dict(zip(CLASSES, live.tolist()))},
                   "reference": {"class_distribution": {c: 0.1 for c in CLASSES},
                                 "confidence_histogram": rng.integers(0, 500, 20).tolist()},
                   "checks": {"class_psi": {"score": 0.123, "status": "ok"}, "confidence_ks": {"score": 0.05}}}}
    if labelled:
        confusion = np.diag(np.full(10, 90)) + rng.integers(0, 5, (10, 10))
        s["accuracy"] = {"n": int(confusion.sum()), "accuracy": 0.9, "confusion": confusion.tolist()}
    return s


def test_the_figure_has_its_panels_and_colours(tmp_path):
    for labelled, panels in ((False, 2), (True, 3)):
        path = write_figure(_summary(labelled), tmp_path / f"s{panels}.png")
        img = Image.open(path)
        assert img.format == "PNG" and img.size == (PANEL_W * panels, 480)
        px = np.asarray(img.convert("RGB")).reshape(-1, 3)
        colours = {tuple(c) for c in px[::7]}
        assert RUN in colours and REF in colours  # this run's bars, the reference's bars
        # the last panel is the confusion matrix when labelled: its diagonal's dark blue cells (not the bars' blue)
        right = np.asarray(img.convert("RGB"))[:, -PANEL_W:].astype(int)
        dark = ((right[..., 0] < 100) & (right[..., 1] < 100) & (right[..., 2] > 90)).sum()
        assert dark > 4_000 if labelled else dark < 500, dark  # (a few: edges where text meets the bars)
    assert write_figure({"n": 0}, tmp_path / "none.png") is None  # no reference: no figure
    assert not (tmp_path / "none.png").exists()
