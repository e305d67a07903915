"""Compare a window of live traffic with the artifact's held-out reference statistics.

Scores: PSI on the predicted-class distribution, Kolmogorov-Smirnov statistics on the max-softmax
confidence and on the per-image mean pixel (on the reference's histogram bins), and the share of
the most frequent class (the seed's "is the model always predicting the same class?"), and how many
more answers are flagged not_a_garment than on the artifact's validation pictures (its calibration).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fmnist.calibration import FLAGS
from fmnist.labels import CLASSES, NUM_CLASSES

STATUS_ORDER = ("ok", "warn", "alert")
OOD_EXCESS_WARN, OOD_EXCESS_ALERT = 0.05, 0.15  # not_a_garment share over the validation pictures' (2 % by design)


@dataclass(frozen=True)
class Thresholds:
    """When a score is a warning or an alert. The values, their defaults and what they mean are the
    config.Settings fields of the same names (FMNIST_PSI_ALERT=0.3, ...): stated there only."""

    psi_warn: float
    psi_alert: float
    ks_warn: float
    ks_alert: float
    dominance_warn: float
    dominance_alert: float
    accuracy_drop_warn: float
    accuracy_drop_alert: float
    min_samples: int

    @classmethod
    def from_settings(cls, settings=None) -> "Thresholds":
        """The same-named fields of a config.Settings (its defaults when none is given)."""
        from fmnist.config import Settings

        settings = settings if settings is not None else Settings()
        return cls(**{k: getattr(settings, k) for k in cls.__dataclass_fields__})


def psi(actual: np.ndarray, expected: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index: sum (a - e) * ln(a / e) over the classes (shares, eps-floored)."""
    a = np.clip(np.asarray(actual, float), eps, None)
    e = np.clip(np.asarray(expected, float), eps, None)
    a, e = a / a.sum(), e / e.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def ks_against_histogram(values: np.ndarray, hist: dict) -> float:
    """KS statistic between the values' CDF and the reference histogram's CDF, at the bin edges."""
    edges = np.asarray(hist["edges"], float)
    ref = np.asarray(hist["counts"], float)
    if len(values) == 0 or ref.sum() == 0:
        return 0.0
    live, _ = np.histogram(np.clip(values, edges[0], edges[-1]), bins=edges)
    return float(np.max(np.abs(np.cumsum(live) / len(values) - np.cumsum(ref) / ref.sum())))


def _status(score: float, warn: float, alert: float) -> str:
    return "alert" if score >= alert else "warn" if score >= warn else "ok"


def window_histograms(window: dict, reference: dict) -> dict:
    """A window of predictions (arrays class_id, confidence, mean_pixel) as the counts drift is scored on:
    class counts, and confidence and mean-pixel counts on the reference's bin edges (values clipped to
    them). Counts of several windows add up (fmnist batch sums them part by part)."""
    conf_edges = np.asarray(reference["confidence_histogram"]["edges"], float)
    px_edges = np.asarray(reference["mean_pixel_histogram"]["edges"], float)
    conf = np.asarray(window["confidence"], float)
    px = np.asarray(window["mean_pixel"], float)
    out = {
        "n": int(len(window["class_id"])),
        "class_counts": np.bincount(np.asarray(window["class_id"], int), minlength=NUM_CLASSES).tolist(),
        "confidence_counts": np.histogram(np.clip(conf, conf_edges[0], conf_edges[-1]), bins=conf_edges)[0].tolist(),
        "mean_pixel_counts": np.histogram(np.clip(px, px_edges[0], px_edges[-1]), bins=px_edges)[0].tolist(),
        "confidence_sum": float(conf.sum()),
        "mean_pixel_sum": float(px.sum()),
    }
    if "flag" in window:  # the prediction log's windows carry each answer's flag; fmnist batch's parts do not
        out["flag_counts"] = [sum(f == name for f in window["flag"]) for name in FLAGS]
    return out


def _ks_counts(live_counts, ref_counts) -> float:
    live, ref = np.asarray(live_counts, float), np.asarray(ref_counts, float)
    if live.sum() == 0 or ref.sum() == 0:
        return 0.0
    return float(np.max(np.abs(np.cumsum(live) / live.sum() - np.cumsum(ref) / ref.sum())))


def drift_report(window: dict, reference: dict, th: Thresholds) -> dict:
    """window: arrays class_id, confidence, mean_pixel (most recent first)."""
    return drift_from_histograms(window_histograms(window, reference), reference, th)


def drift_from_histograms(h: dict, reference: dict, th: Thresholds) -> dict:
    """The drift checks of monitoring, from a window's counts (window_histograms, possibly summed)."""
    n = int(h["n"])
    counts = np.asarray(h["class_counts"], float)
    share = counts / max(n, 1)
    ref_share = np.asarray(reference.get("class_distribution") or [1 / NUM_CLASSES] * NUM_CLASSES, float)
    conf_hist = np.asarray(h["confidence_counts"], int)
    flag_share = np.asarray(h.get("flag_counts") or [0] * len(FLAGS), float) / max(n, 1)
    expected = reference.get("flagged_share") or {}
    scores = {
        "class_psi": (psi(share, ref_share) if n else 0.0, th.psi_warn, th.psi_alert),
        "confidence_ks": (_ks_counts(h["confidence_counts"], reference["confidence_histogram"]["counts"]),
                          th.ks_warn, th.ks_alert),
        "mean_pixel_ks": (_ks_counts(h["mean_pixel_counts"], reference["mean_pixel_histogram"]["counts"]),
                          th.ks_warn, th.ks_alert),
        "dominant_class_share": (float(share.max()) if n else 0.0, th.dominance_warn, th.dominance_alert),
    }
    if "flag_counts" in h:  # more answers flagged not_a_garment than on the validation pictures: unknown traffic
        scores["not_a_garment_excess"] = (max(0.0, float(flag_share[1]) - float(expected.get("not_a_garment", 0.0))),
                                          OOD_EXCESS_WARN, OOD_EXCESS_ALERT)
    enough = n >= th.min_samples
    checks = {
        name: {"score": round(score, 6), "warn": warn, "alert": alert,
               "status": _status(score, warn, alert) if enough else "ok"}
        for name, (score, warn, alert) in scores.items()
    }
    checks["dominant_class_share"]["class"] = CLASSES[int(share.argmax())] if n else None
    status = max((c["status"] for c in checks.values()), key=STATUS_ORDER.index)
    return {
        "status": status,
        "window_size": n,
        "enough_samples": enough,
        "min_samples": th.min_samples,
        "checks": checks,
        "window": {
            "class_distribution": dict(zip(CLASSES, share.round(6).tolist())),
            "confidence_mean": h["confidence_sum"] / n if n else None,
            "confidence_histogram": conf_hist.tolist(),
            "mean_pixel_mean": h["mean_pixel_sum"] / n if n else None,
            "flagged_share": dict(zip(FLAGS, flag_share.round(6).tolist())) if "flag_counts" in h else None,
        },
        "reference": {
            "class_distribution": dict(zip(CLASSES, ref_share.round(6).tolist())),
            "confidence_mean": reference.get("confidence_mean"),
            "confidence_histogram": reference["confidence_histogram"]["counts"],
            "mean_pixel_mean": reference.get("mean_pixel_mean"),
            "flagged_share": expected or None,
            "source": reference.get("source"),
        },
        "thresholds": asdict(th),
    }


def accuracy_report(feedback: dict, test_accuracy: "float | None", th: Thresholds) -> dict:
    y, p = feedback["true"], feedback["predicted"]
    n = int(len(y))
    per_class = {}
    for i, name in enumerate(CLASSES):
        mask = y == i
        per_class[name] = {"n": int(mask.sum()), "accuracy": float((p[mask] == i).mean()) if mask.any() else None}
    acc = float((p == y).mean()) if n else None
    status = "ok"
    if acc is not None and test_accuracy is not None and n >= th.min_samples:
        status = _status(test_accuracy - acc, th.accuracy_drop_warn, th.accuracy_drop_alert)
    return {"n": n, "accuracy": acc, "test_accuracy": test_accuracy, "status": status, "per_class": per_class}
