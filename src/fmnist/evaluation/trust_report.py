"""How far each model's answers can be trusted: calibration, coverage and accuracy, the not-a-garment flag.

Part of `fmnist compare`. Measured on the test images and the picture benchmark (never fitted on: the
calibration is fitted on the validation split) and on the out-of-distribution benchmark
(`fmnist.pictures.outliers.ood_benchmark`: held-out scenes, text, shapes, blank pages, noise).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist.calibration import Calibration, accuracy_by_confidence, expected_calibration_error, softmax_t
from fmnist.evaluation.evaluate import artifact_logits

PEOPLE_STYLES = ("product", "drawing", "pattern", "photo", "rotated", "dark", "lineart", "onphoto")  # what people send


def _auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    s = np.concatenate([pos, neg])
    ranks = s.argsort(kind="stable").argsort() + 1.0
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def trust(art, x: np.ndarray, y: np.ndarray, bench: dict, ood: dict) -> dict:
    """One model's figures: ECE on the test set, coverage and accuracy on pictures, the flag on non-garments."""
    cal = Calibration.from_dict(art.manifest.get("calibration")) or Calibration()
    z = artifact_logits(art, x)
    styles = [s for s in PEOPLE_STYLES if s in bench["pictures"]]
    zp = np.concatenate([artifact_logits(art, bench["pictures"][s]) for s in styles])
    yp = np.tile(bench["labels"], len(styles))
    pp = cal.probabilities(zp)
    ood_p, flags = cal.ood_scores(pp), cal.flags(pp)
    answered = np.array([f is None for f in flags])
    right = pp.argmax(1) == yp
    order, curve_acc = accuracy_by_confidence(np.where(ood_p < cal.ood_above, pp.max(1), -1.0), right)
    per_style = {}
    for k, s in enumerate(styles):
        sel = slice(k * len(bench["labels"]), (k + 1) * len(bench["labels"]))
        a = answered[sel]
        per_style[s] = {"coverage": float(a.mean()), "accuracy": float(right[sel][a].mean()) if a.any() else None,
                        "raw_accuracy": float(right[sel].mean())}
    ood_rows = {}
    for kind, px in ood.items():
        po = cal.probabilities(artifact_logits(art, px))
        fo = cal.flags(po)
        ood_rows[kind] = {"not_a_garment": float(np.mean([f == "not_a_garment" for f in fo])),
                          "any_flag": float(np.mean([f is not None for f in fo])),
                          "auroc": _auroc(cal.ood_scores(po), ood_p)}
    return {
        "temperature": cal.temperature,
        "ece_raw": expected_calibration_error(softmax_t(np.concatenate([z, zp]), 1.0), np.concatenate([y, yp])),
        "ece": expected_calibration_error(cal.probabilities(np.concatenate([z, zp])), np.concatenate([y, yp])),
        "coverage": float(answered.mean()), "answered_accuracy": float(right[answered].mean()) if answered.any() else None,
        "picture_accuracy": float(right.mean()),
        "garments_not_a_garment": float(np.mean([f == "not_a_garment" for f in flags])),
        "curve": {"coverage": (np.arange(1, len(order) + 1) / len(order))[::25].tolist(), "accuracy": curve_acc[::25].tolist()},
        "per_style": per_style, "ood": ood_rows,
        "coverage_at_95": float(np.max(np.nonzero(curve_acc >= 0.95)[0], initial=-1) + 1) / len(order),
    }


def fig_coverage(rows: list, out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    for r in rows:
        t = r["trust"]
        line, = ax.plot(100 * np.asarray(t["curve"]["coverage"]), 100 * np.asarray(t["curve"]["accuracy"]),
                        label=r["label"], lw=1.4)
        if t["answered_accuracy"] is not None:
            ax.plot(100 * t["coverage"], 100 * t["answered_accuracy"], "o", color=line.get_color(), ms=6)
    ax.axhline(95, color="#888", lw=0.8, ls="--")
    ax.axvline(80, color="#888", lw=0.8, ls=":")
    ax.set_xlabel("coverage: answers given, most confident first (%)")
    ax.set_ylabel("accuracy of the answers given (%)")
    ax.set_ylim(40, 100.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title("Pictures people send (" + ", ".join(PEOPLE_STYLES) + "):\ncoverage vs accuracy; "
                 "a dot: each model's own flags (unsure or not_a_garment)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "coverage_accuracy.png", dpi=110)
    plt.close(fig)
    return "coverage_accuracy.png"


def trust_section(rows: list, figs: dict) -> list:
    kinds = list(rows[0]["trust"]["ood"]) if rows else []
    lines = [
        "## When it cannot tell: calibration, coverage, the not-a-garment flag",
        "",
        "Each artifact's calibration (temperature, out-of-distribution reference, flag thresholds) is fitted on "
        "the validation split and its pictures (`fmnist calibrate`); these figures are on the test images, the "
        "picture benchmark (" + ", ".join(PEOPLE_STYLES) + ": what people send) and the out-of-distribution "
        "benchmark (" + ", ".join(kinds) + ": drawn from sources no training run sees). ECE: expected "
        "calibration error (15 bins) over test images and pictures, before and after the temperature.",
        "",
        "| model | T | ECE before → after | picture accuracy | answered (coverage) | accuracy of answered | "
        "coverage at 95 % | garments flagged not_a_garment | "
        + " | ".join(f"{k}: flagged" for k in kinds) + " | OOD AUROC |",
        "|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(kinds) + "---:|",
    ]
    for r in rows:
        t = r["trust"]
        acc = f"{100 * t['answered_accuracy']:.1f} %" if t["answered_accuracy"] is not None else "-"
        auroc = np.mean([o["auroc"] for o in t["ood"].values()])
        lines.append(
            f"| {r['label']} | {t['temperature']:.2f} | {t['ece_raw']:.3f} → {t['ece']:.3f} | "
            f"{100 * t['picture_accuracy']:.1f} % | {100 * t['coverage']:.1f} % | {acc} | "
            f"{100 * t['coverage_at_95']:.1f} % | {100 * t['garments_not_a_garment']:.1f} % | "
            + " | ".join(f"{100 * t['ood'][k]['not_a_garment']:.0f} %" for k in kinds) + f" | {auroc:.3f} |")
    lines += ["", "(answered: neither flag; coverage at 95 %: the largest share of the pictures, most confident "
              "first, whose accuracy is still 95 %; OOD AUROC: the ood_score separating non-garments from garment "
              "pictures, mean over the kinds.)", "", f"![coverage vs accuracy]({figs['coverage']})", ""]
    if rows:
        last = rows[-1]
        lines += [f"Per style, {last['label']}: accuracy of all answers → share answered without a flag, and their "
                  "accuracy.", "", "| style | accuracy | answered | accuracy of answered |", "|---|---:|---:|---:|"]
        for style, v in last["trust"]["per_style"].items():
            acc = f"{100 * v['accuracy']:.1f} %" if v["accuracy"] is not None else "-"
            lines.append(f"| {style} | {100 * v['raw_accuracy']:.1f} % | {100 * v['coverage']:.1f} % | {acc} |")
        lines.append("")
    return lines
