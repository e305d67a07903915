"""Trustworthy confidence: what an artifact's answers mean, and when it says it cannot tell.

`Calibration` is the manifest's "calibration" section (fitted by fmnist.evaluation.calibrate at training,
import, or `fmnist calibrate` time, on the validation split and its pictures, never on the test set):

- temperature scaling (Guo et al. 2017): probabilities are softmax(logits / T), T fitted by minimum
  negative log-likelihood; the confidence an answer carries is then calibrated (its expected calibration
  error before and after is recorded);
- the out-of-distribution score: the entropy of those probabilities, as a share of the maximum (log 10),
  turned into a rank against the validation pictures' own: ood_score 0.97 means "more uncertain than 97 %
  of the garment pictures it was checked on". The recipe trains non-garment pictures towards a uniform
  answer (outlier exposure), so entropy is the model's own signal for "not one of mine"; measured against
  energy and maximum softmax on the out-of-distribution benchmark (docs/benchmarks.md), it separates best;
- flags: "not_a_garment" when ood_score >= ood_above, else "unsure" when the confidence < unsure_below,
  else None. ood_above is a rank (a share of validation garments flagged), unsure_below the confidence at
  which the validation pictures' answered accuracy reaches the target.

Numbers only (NumPy): serving uses it without torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

FLAGS = ("unsure", "not_a_garment")
LOG_CLASSES = float(np.log(10))


def softmax_t(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def entropy_share(probs: np.ndarray) -> np.ndarray:
    """Entropy of each row of probabilities as a share of the maximum (0: certain, 1: uniform)."""
    p = np.maximum(probs, 1e-12)
    return (p * np.log(p)).sum(axis=1) / -LOG_CLASSES


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """ECE (Naeini et al. 2015): |accuracy - confidence| per equal-width confidence bin, weighted by its share."""
    conf = probs.max(axis=1)
    right = probs.argmax(axis=1) == labels
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.mean() * abs(float(right[sel].mean()) - float(conf[sel].mean()))
    return float(total)


def accuracy_by_confidence(conf: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order, accuracy): the answers most confident first, and the accuracy of the first k+1 of them for each k
    (the coverage/accuracy curve that the unsure threshold is read from)."""
    order = np.argsort(-np.asarray(conf), kind="stable")
    return order, np.cumsum(np.asarray(right)[order]) / np.arange(1, len(order) + 1)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """T > 0 minimising the negative log-likelihood of softmax(logits / T) (golden-section search on log T)."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        m = s.max(axis=1)
        return float((m + np.log(np.exp(s - m[:, None]).sum(axis=1)) - s[np.arange(len(y)), y]).mean())

    lo, hi = np.log(0.05), np.log(20.0)
    g = (np.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return float(np.exp((lo + hi) / 2))


@dataclass(frozen=True)
class Calibration:
    temperature: float = 1.0
    ood_reference: list = field(default_factory=list)  # 101 quantiles (0, 1, ..., 100 %) of validation entropy
    ood_above: float = 0.98  # ood_score from which an answer is "not_a_garment"
    unsure_below: float = 0.0  # calibrated confidence under which an answer is "unsure"
    score: str = "entropy"
    ece: dict = field(default_factory=dict)  # {"before": .., "after": ..} on the validation fit set
    fitted_on: str = ""
    expected: dict = field(default_factory=dict)  # shares flagged on the fit set: what drift compares with

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: "dict | None") -> "Calibration | None":
        if not d:
            return None
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        return softmax_t(logits, self.temperature)

    def ood_scores(self, probs: np.ndarray) -> np.ndarray:
        """(N,) in 0-1: each answer's entropy ranked against the validation pictures' (1: beyond them all)."""
        h = entropy_share(probs)
        ref = np.asarray(self.ood_reference, dtype=np.float64)
        if ref.size < 2:
            return h
        return np.interp(h, ref, np.linspace(0.0, 1.0, ref.size), left=0.0, right=1.0)

    def flags(self, probs: np.ndarray, ood: "np.ndarray | None" = None) -> list:
        ood = self.ood_scores(probs) if ood is None else ood
        above, below = self.ood_above, self.unsure_below
        return ["not_a_garment" if o >= above else "unsure" if c < below else None
                for o, c in zip(ood.tolist(), probs.max(axis=1).tolist())]
