"""Classification metrics in NumPy: accuracy, precision/recall/F1 per class, confusion matrix."""

from __future__ import annotations

import numpy as np

from fmnist.labels import CLASSES, NUM_CLASSES


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """cm[i, j] = how many images of true class i were predicted as j."""
    idx = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)
    return np.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def classification_report(y_true: np.ndarray, y_pred: np.ndarray, classes=CLASSES) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    cm = confusion_matrix(y_true, y_pred, len(classes))
    tp = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0)
    support = cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {
        "accuracy": float(tp.sum() / max(cm.sum(), 1)),
        "macro_f1": float(f1.mean()),
        "n": int(cm.sum()),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(classes)
        },
        "confusion_matrix": cm.tolist(),
    }


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


CONFIDENCE_BINS = 20  # max-softmax in [0.1, 1]: 20 equal bins on [0, 1]
MEAN_PIXEL_BINS = 50  # per-image mean pixel (0-1 scale): 50 bins on [0, 1]


def reference_statistics(probs: np.ndarray, pixels: np.ndarray) -> dict:
    """What drift detection compares live traffic against, from held-out data.

    probs: (N, 10) softmax outputs; pixels: uint8 (N, 28, 28) raw inputs.
    """
    pred = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    mean_px = pixels.reshape(len(pixels), -1).mean(axis=1) / 255.0
    conf_counts, conf_edges = np.histogram(conf, bins=CONFIDENCE_BINS, range=(0.0, 1.0))
    px_counts, px_edges = np.histogram(mean_px, bins=MEAN_PIXEL_BINS, range=(0.0, 1.0))
    return {
        "n": int(len(pred)),
        "class_distribution": (np.bincount(pred, minlength=NUM_CLASSES) / max(len(pred), 1)).tolist(),
        "confidence_histogram": {"edges": conf_edges.tolist(), "counts": conf_counts.tolist()},
        "mean_pixel_histogram": {"edges": px_edges.tolist(), "counts": px_counts.tolist()},
        "confidence_mean": float(conf.mean()),
        "mean_pixel_mean": float(mean_px.mean()),
    }
