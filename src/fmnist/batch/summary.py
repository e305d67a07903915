"""What a person reads after a batch run: how many, the class distribution beside the model's reference,
the confidence histogram, the drift checks monitoring uses, and accuracy with the confusion matrix when the
input had labels, as JSON (its figure: batch/figure.py)."""

from __future__ import annotations

import numpy as np

from fmnist.labels import CLASSES


def summarise(stats: list, manifest: dict, meta: dict) -> dict:
    """The parts' statistics (job.classify_chunk), summed, against the artifact's reference."""
    from fmnist.monitoring.drift import Thresholds, drift_from_histograms

    n = sum(s["n"] for s in stats)
    errors = sum(s["errors"] for s in stats)
    confusion = np.sum([np.asarray(s["confusion"]) for s in stats], axis=0) if stats else np.zeros((10, 10), int)
    out = {"input": meta["input"], "shard": meta["shard"], "model": meta["model"], "n": n, "errors": errors}
    ref = manifest.get("reference") or {}
    if ref and stats:
        h = {key: np.sum([np.asarray(s[key]) for s in stats], axis=0).tolist()
             for key in ("class_counts", "confidence_counts", "mean_pixel_counts")}
        h.update(n=n, confidence_sum=sum(s["confidence_sum"] for s in stats),
                 mean_pixel_sum=sum(s["mean_pixel_sum"] for s in stats))
        if all("flag_counts" in s for s in stats):
            h["flag_counts"] = np.sum([np.asarray(s["flag_counts"]) for s in stats], axis=0).tolist()
        th = Thresholds.from_settings()
        drift = drift_from_histograms(h, ref, th)
        out["class_counts"] = dict(zip(CLASSES, h["class_counts"]))
        out["confidence_histogram"] = {"edges": ref["confidence_histogram"]["edges"], "counts": h["confidence_counts"]}
        out["drift"] = drift
        if "flag_counts" in h:
            from fmnist.calibration import FLAGS

            out["flagged"] = dict(zip(FLAGS, h["flag_counts"]))
    labelled = int(confusion.sum())
    if labelled:
        per_class = {c: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
                     for i, c in enumerate(CLASSES)}
        out["accuracy"] = {"n": labelled, "accuracy": float(np.trace(confusion) / labelled),
                           "test_accuracy": manifest.get("metrics", {}).get("test", {}).get("accuracy"),
                           "per_class": per_class, "confusion": confusion.tolist()}
    return out
