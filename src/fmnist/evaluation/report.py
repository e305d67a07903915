"""`fmnist compare`: the seed's story (MLP vs CNNs) told with measured numbers, as Markdown + PNG figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmnist import data as fdata
from fmnist.evaluation.evaluate import artifact_logits
from fmnist.evaluation.metrics import classification_report
from fmnist.evaluation.picture_benchmark import (
    HEADLINE_EXCLUDES,
    fig_examples,
    fig_pictures,
    load_benchmark,
    picture_report,
)
from fmnist.labels import CLASSES
from fmnist.registry import resolve

WEAK = ("Pullover", "Coat", "Shirt")  # the look-alike classes the seed's MLP confuses


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _row(art, report) -> dict:
    m = art.manifest
    tr = m.get("training", {})
    hist = tr.get("history") or []
    best = next((h for h in hist if h["epoch"] == tr.get("best_epoch")), hist[-1] if hist else None)
    return {
        "label": art.ref,
        "arch": art.arch,
        "params": m["architecture"]["params"],
        "flops": m["architecture"].get("flops_per_image"),  # unknown for an imported (Keras, ONNX) model
        "imported": bool(m["architecture"].get("external")),
        "seconds": tr.get("duration_seconds"),
        "epochs": tr.get("epochs_run"),
        "acc": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "f1": {c: report["per_class"][c]["f1"] for c in CLASSES},
        "cm": np.array(report["confusion_matrix"]),
        "history": hist,
        "gap": (best["train_eval_acc"] - best["val_acc"]) if best and "train_eval_acc" in best else None,
        "max_gap": max((h["train_eval_acc"] - h["val_acc"] for h in hist if "train_eval_acc" in h), default=None),
    }


def write_report(refs, out: Path, registry=None, data_dir=None, command: str = "") -> tuple:
    """Evaluate every model on the test set (ONNX Runtime, as served) and write out/report.md + figures; returns
    (its path, [(model, garment report)]: what the command line prints of the garment gate)."""
    out.mkdir(parents=True, exist_ok=True)
    ds = fdata.load(data_dir, allow_download=False)
    x, y = ds.test_images, ds.test_labels
    arts = [resolve(r, registry) for r in refs]
    bench = load_benchmark(ds)
    from fmnist.evaluation import trust_report
    from fmnist.pictures.outliers import ood_benchmark

    ood = ood_benchmark()
    from fmnist.evaluation import garment_benchmark

    garments = garment_benchmark.load()
    rows, preds = [], []
    for art in arts:
        pred = artifact_logits(art, x).argmax(1)
        preds.append(pred)
        rows.append(_row(art, classification_report(y, pred)))
        rows[-1]["pictures"] = picture_report(lambda px, art=art: artifact_logits(art, px), bench)
        rows[-1]["trust"] = trust_report.trust(art, x, y, bench, ood)
        rows[-1]["garments"] = garment_benchmark.artifact_report(art, garments, bench)

    figs = {
        "per_class_f1": _fig_per_class(rows, out),
        "tradeoffs": _fig_tradeoffs(rows, out),
        "learning_curves": _fig_learning_curves(rows, out),
        "confusion": _fig_confusion(rows, out),
        "misclassified": _fig_misclassified(rows, preds, x, y, out),
        "pictures": fig_pictures(rows, out),
        "picture_examples": fig_examples(ds, bench, out),
        "coverage": trust_report.fig_coverage(rows, out),
    }
    md = _markdown(rows, figs, command, len(y))
    path = out / "report.md"
    path.write_text(md)
    return path, [(r["label"], r["garments"]) for r in rows]


# --------------------------------------------------------------------------- Markdown


def _baseline(rows):
    return next((r for r in rows if r["arch"] == "mlp"), None)


def _markdown(rows, figs, command, n_test) -> str:
    base = _baseline(rows)
    best = max(rows, key=lambda r: r["acc"])
    lines = [
        "# Fashion-MNIST: MLP baseline vs CNNs",
        "",
        f"All numbers are measured on the {n_test:,} real Fashion-MNIST test images with each model's ONNX graph "
        "(the one serving runs); training times are wall-clock on the machine that trained them "
        "(recorded in each artifact's manifest).",
        "",
        f"Regenerate with: `{command}`" if command else "",
        "",
        "## Summary",
        "",
        "| model | arch | params | MFLOPs/image | train time | epochs | test acc | pictures | macro-F1 | "
        + " | ".join(f"F1 {c}" for c in WEAK) + " | train−val gap |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|" + "---:|" * len(WEAK) + "---:|",
    ]
    for r in rows:
        t = f"{r['seconds']:.0f} s" if r["seconds"] is not None else ("unknown (imported)" if r["imported"] else "-")
        flops = f"{r['flops'] / 1e6:.2f}" if r["flops"] is not None else "-"
        gap = f"{100 * r['gap']:+.1f} pt" if r["gap"] is not None else "-"
        lines.append(
            f"| {r['label']} | {r['arch']} | {r['params']:,} | {flops} | {t} | {r['epochs'] or '-'} | "
            f"{100 * r['acc']:.2f} % | {100 * r['pictures']['accuracy']:.1f} % | {r['macro_f1']:.4f} | "
            + " | ".join(f"{r['f1'][c]:.3f}" for c in WEAK)
            + f" | {gap} |"
        )
    lines += ["", "(pictures: the picture benchmark below, mean over its plain-background styles; train−val gap: "
              "accuracy on clean training images minus validation accuracy at the kept epoch.)", ""]
    lines += _pictures_section(rows, figs)
    from fmnist.evaluation.trust_report import trust_section

    lines += trust_section(rows, figs)
    from fmnist.evaluation.garment_benchmark import markdown_section

    lines += markdown_section([(r["label"], r["garments"]) for r in rows])
    if base is not None:
        others = {c: np.mean([base["f1"][o] for o in CLASSES if o not in WEAK]) for c in WEAK}
        lines += [
            "## Where the MLP fails",
            "",
            f"The MLP ({base['label']}) reaches {100 * base['acc']:.2f} % overall, but its F1 on the look-alike "
            "upper-body garments is far below the rest: "
            + ", ".join(f"{c} {base['f1'][c]:.3f}" for c in WEAK)
            + f", against a mean of {others[WEAK[0]]:.3f} on the other seven classes. Flattening the image throws "
            "away which pixels are neighbours, so collars, sleeves, zips and buttons — the local patterns that tell "
            "these classes apart — are invisible to it.",
            "",
            "## How much each model lifts those classes (F1, points over the MLP baseline)",
            "",
            "| model | " + " | ".join(WEAK) + " | overall accuracy |",
            "|---|" + "---:|" * (len(WEAK) + 1),
        ]
        for r in rows:
            if r is base:
                continue
            lines.append(
                f"| {r['label']} | " + " | ".join(f"{100 * (r['f1'][c] - base['f1'][c]):+.1f}" for c in WEAK)
                + f" | {100 * (r['acc'] - base['acc']):+.2f} pt |"
            )
        lines.append("")
    overfit = [r for r in rows if r["max_gap"] is not None]
    if overfit:
        worst = max(overfit, key=lambda r: r["max_gap"])
        gaps = ", ".join(f"{r['label']} {100 * r['max_gap']:.1f}" for r in sorted(overfit, key=lambda r: -r["max_gap"]))
        lines += [
            "## Overfitting",
            "",
            f"The largest train−validation accuracy gap during training is {100 * worst['max_gap']:.1f} points "
            f"({worst['label']}, {worst['arch']}). Largest gap per model, in points: {gaps}. "
            "Dense layers with many parameters memorise the training images; convolutions share their weights "
            "across the image and, with augmentation, generalise. See the learning curves.",
            "",
        ]
    lines += [
        "## Accuracy vs size vs compute vs training time",
        "",
        f"The most accurate model is {best['label']} at {100 * best['acc']:.2f} % with {best['params']:,} parameters "
        + (f"and {best['flops'] / 1e6:.1f} MFLOPs per image." if best["flops"] is not None else "(imported: FLOPs unknown)."),
        "",
        f"![trade-offs]({figs['tradeoffs']})",
        "",
        "## Per-class F1",
        "",
        f"![per-class F1]({figs['per_class_f1']})",
        "",
        "## Learning curves (clean train vs validation accuracy)",
        "",
        f"![learning curves]({figs['learning_curves']})",
        "",
        "## Confusion matrices (rows: true class, normalised)",
        "",
        f"![confusion matrices]({figs['confusion']})",
        "",
        "## Misclassified test images",
        "",
        f"![misclassified]({figs['misclassified']})",
        "",
    ]
    return "\n".join(lines)


def _pictures_section(rows, figs) -> list:
    from fmnist.pictures.styles import STYLES

    n = rows[0]["pictures"]["n_per_style"] if rows else 0
    lines = [
        "## Real pictures: the picture benchmark",
        "",
        f"People send pictures, not 28×28 dataset images. The benchmark renders the first {n:,} test images in "
        f"each of {len(STYLES)} styles (`fmnist.pictures.styles`) and converts them back with `preprocess=auto`, the "
        "code `/predict` runs; `fmnist evaluate MODEL --pictures` prints it for one model. The \"pictures\" "
        "column is the mean over every style but " + ", ".join(HEADLINE_EXCLUDES) + ". Styles marked *held out* "
        "are never drawn by the training recipe's picture mix.",
        "",
        "| model | raw test | " + " | ".join(s.name + (" *(held out)*" if s.held_out else "") for s in STYLES)
        + " | pictures |",
        "|---|---:|" + "---:|" * (len(STYLES) + 1),
    ]
    for r in rows:
        p = r["pictures"]
        lines.append(f"| {r['label']} | {100 * r['acc']:.2f} % | "
                     + " | ".join(f"{100 * p['styles'][s.name]:.1f}" for s in STYLES)
                     + f" | **{100 * p['accuracy']:.1f} %** |")
    lines += ["", "| style | what it is |", "|---|---|"] + [f"| {s.name} | {s.description} |" for s in STYLES]
    lines += ["", f"![accuracy per picture style]({figs['pictures']})", "",
              "Examples (top row: the test images; then per style, the picture and the 28×28 image the model gets "
              "from it; transparency shown as light grey):", "", f"![picture examples]({figs['picture_examples']})",
              ""]
    return lines


# --------------------------------------------------------------------------- figures


def _save(plt, fig, out: Path, name: str, tight: bool = False) -> str:
    """Lay out, write out/name as PNG, free the figure; returns the name the Markdown links to."""
    fig.tight_layout()
    fig.savefig(out / name, dpi=110, **({"bbox_inches": "tight"} if tight else {}))
    plt.close(fig)
    return name


def _short(c: str) -> str:
    return c.split("/")[0]


def _fig_per_class(rows, out: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(12, 4.5))
    width = 0.8 / len(rows)
    idx = np.arange(len(CLASSES))
    for i, r in enumerate(rows):
        ax.bar(idx + i * width - 0.4 + width / 2, [r["f1"][c] for c in CLASSES], width, label=r["label"])
    ax.set_xticks(idx, [_short(c) for c in CLASSES], rotation=20)
    ax.set_ylim(0.5, 1.0)
    ax.set_ylabel("test F1")
    for c in WEAK:
        ax.axvspan(CLASSES.index(c) - 0.45, CLASSES.index(c) + 0.45, color="orange", alpha=0.12)
    ax.legend(fontsize=8, ncol=min(len(rows), 6))
    ax.set_title("Per-class F1 (shaded: the look-alike classes)")
    return _save(plt, fig, out, "per_class_f1.png")


def _fig_tradeoffs(rows, out: Path) -> str:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    specs = [("params", "parameters", True), ("flops", "FLOPs per image", True), ("seconds", "training time (s)", False)]
    for ax, (key, label, log) in zip(axes, specs):
        for r in rows:
            if r[key] is None:
                continue
            ax.scatter(r[key], 100 * r["acc"], s=50)
            ax.annotate(r["label"], (r[key], 100 * r["acc"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
        if log:
            ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    fig.suptitle("Accuracy against model size, compute and training time")
    return _save(plt, fig, out, "tradeoffs.png")


def _panels(plt, n: int, width: float, height: float):
    """A figure with one panel per item, three to a row; spare panels are blanked."""
    n = max(n, 1)
    cols = min(n, 3)
    nrows = -(-n // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(width * cols, height * nrows), squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, axes


def _fig_learning_curves(rows, out: Path) -> str:
    plt = _plt()
    with_hist = [r for r in rows if r["history"]]
    fig, axes = _panels(plt, len(with_hist), 4.6, 3.4)
    for ax, r in zip(axes.flat, with_hist):
        ep = [h["epoch"] for h in r["history"]]
        ax.plot(ep, [100 * h.get("train_eval_acc", h["train_acc"]) for h in r["history"]], label="train (clean)")
        ax.plot(ep, [100 * h["val_acc"] for h in r["history"]], label="validation")
        ax.plot(ep, [100 * h["train_acc"] for h in r["history"]], ":", label="train (augmented, running)", alpha=0.6)
        ax.set_title(r["label"], fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(plt, fig, out, "learning_curves.png")


def _fig_confusion(rows, out: Path) -> str:
    plt = _plt()
    fig, axes = _panels(plt, len(rows), 5.2, 4.8)
    names = [_short(c)[:8] for c in CLASSES]
    for ax, r in zip(axes.flat, rows):
        cm = r["cm"] / np.maximum(r["cm"].sum(axis=1, keepdims=True), 1)
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=1)
        for i in range(len(CLASSES)):
            for j in range(len(CLASSES)):
                if cm[i, j] >= 0.01:
                    ax.text(j, i, f"{100 * cm[i, j]:.0f}", ha="center", va="center", fontsize=6,
                            color="white" if cm[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(CLASSES)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(CLASSES)), names, fontsize=7)
        ax.set_title(f"{r['label']} ({100 * r['acc']:.2f} %)", fontsize=10)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    return _save(plt, fig, out, "confusion_matrices.png")


def _fig_misclassified(rows, preds, x, y, out: Path, per_model: int = 12) -> str:
    """A row per model: the first test images it gets wrong, titled true -> predicted."""
    plt = _plt()
    fig, axes = plt.subplots(len(rows), per_model, figsize=(1.25 * per_model, 1.6 * len(rows)), squeeze=False)
    for r_i, (r, pred) in enumerate(zip(rows, preds)):
        wrong = np.flatnonzero(pred != y)[:per_model]
        for c_i in range(per_model):
            ax = axes[r_i, c_i]
            ax.axis("off")
            if c_i < len(wrong):
                k = wrong[c_i]
                ax.imshow(x[k], cmap="gray", vmin=0, vmax=255)
                ax.set_title(f"{_short(CLASSES[y[k]])[:8]}\n→{_short(CLASSES[pred[k]])[:8]}", fontsize=6)
        axes[r_i, 0].text(-0.3, 0.5, r["label"], transform=axes[r_i, 0].transAxes, ha="right", va="center", fontsize=8)
    fig.suptitle("First misclassified test images per model (true → predicted)", fontsize=10)
    return _save(plt, fig, out, "misclassified.png", tight=True)
