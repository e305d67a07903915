"""Compare a window of live traffic with the artifact's held-out reference statistics.

Scores: PSI on the predicted-class distribution, Kolmogorov-Smirnov statistics on the max-softmax
confidence and on the per-image mean pixel (on the reference's histogram bins), and the share of
the most frequent class (the seed's "is the model always predicting the same class?").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fmnist.labels import CLASSES, NUM_CLASSES

STATUS_ORDER = ("ok", "warn", "alert")


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


def drift_report(window: dict, reference: dict, th: Thresholds) -> dict:
    """window: arrays class_id, confidence, mean_pixel (most recent first)."""
    n = int(len(window["class_id"]))
    counts = np.bincount(window["class_id"], minlength=NUM_CLASSES) if n else np.zeros(NUM_CLASSES, int)
    share = counts / max(n, 1)
    ref_share = np.asarray(reference.get("class_distribution") or [1 / NUM_CLASSES] * NUM_CLASSES, float)
    conf_hist = np.histogram(window["confidence"], bins=reference["confidence_histogram"]["edges"])[0]
    scores = {
        "class_psi": (psi(share, ref_share) if n else 0.0, th.psi_warn, th.psi_alert),
        "confidence_ks": (ks_against_histogram(window["confidence"], reference["confidence_histogram"]),
                          th.ks_warn, th.ks_alert),
        "mean_pixel_ks": (ks_against_histogram(window["mean_pixel"], reference["mean_pixel_histogram"]),
                          th.ks_warn, th.ks_alert),
        "dominant_class_share": (float(share.max()) if n else 0.0, th.dominance_warn, th.dominance_alert),
    }
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
            "confidence_mean": float(np.mean(window["confidence"])) if n else None,
            "confidence_histogram": conf_hist.tolist(),
            "mean_pixel_mean": float(np.mean(window["mean_pixel"])) if n else None,
        },
        "reference": {
            "class_distribution": dict(zip(CLASSES, ref_share.round(6).tolist())),
            "confidence_mean": reference.get("confidence_mean"),
            "confidence_histogram": reference["confidence_histogram"]["counts"],
            "mean_pixel_mean": reference.get("mean_pixel_mean"),
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
