"""What a person reads after a batch run: how many, the class distribution beside the model's reference,
the confidence histogram, the drift checks monitoring uses, and accuracy with the confusion matrix when the
input had labels. JSON always; a PNG figure where matplotlib is installed (the train extra)."""

from __future__ import annotations

from pathlib import Path

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


def write_figure(summary: dict, path: Path) -> "Path | None":
    """Class distribution vs reference, confidence histogram and (with labels) the confusion matrix."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    if "drift" not in summary:
        return None
    panels = 3 if "accuracy" in summary else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.2 * panels, 4.2))
    drift = summary["drift"]
    x = np.arange(len(CLASSES))
    live = [drift["window"]["class_distribution"][c] for c in CLASSES]
    ref = [drift["reference"]["class_distribution"][c] for c in CLASSES]
    ax = axes[0]
    ax.bar(x - 0.2, live, 0.4, label="this run")
    ax.bar(x + 0.2, ref, 0.4, label="model's reference")
    ax.set_xticks(x, CLASSES, rotation=60, ha="right", fontsize=8)
    ax.set_title(f"classes (PSI {drift['checks']['class_psi']['score']:.3f}, {drift['checks']['class_psi']['status']})")
    ax.legend(fontsize=8)
    ax = axes[1]
    edges = np.asarray(summary["confidence_histogram"]["edges"])
    counts = np.asarray(summary["confidence_histogram"]["counts"], float)
    ax.bar(edges[:-1], counts / max(counts.sum(), 1), np.diff(edges), align="edge", label="this run")
    refc = np.asarray(drift["reference"]["confidence_histogram"], float)
    ax.step(edges[:-1], refc / max(refc.sum(), 1), where="post", color="k", label="reference")
    ax.set_title(f"confidence (KS {drift['checks']['confidence_ks']['score']:.3f})")
    ax.set_xlabel("max probability")
    ax.legend(fontsize=8)
    if panels == 3:
        acc = summary["accuracy"]
        cm = np.asarray(acc["confusion"], float)
        ax = axes[2]
        ax.imshow(cm / np.maximum(cm.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(x, CLASSES, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(x, CLASSES, fontsize=7)
        ax.set_title(f"accuracy {acc['accuracy']:.2%} on {acc['n']:,} labelled")
        ax.set_xlabel("predicted")
    fig.suptitle(f"{summary['model']['name']}:{summary['model']['version']} on {summary['n']:,} images, "
                 f"{summary['errors']:,} unreadable; drift {drift['status']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
