"""The garment yardstick: models judged on garments nobody drew from the dataset, and the regression gate.

The pictures come from the parametric source (fmnist.pictures.garments): the families held out whole from
training (each class's last cut, the sticker style, the held-out photographs), the training families
drawn afresh ("seen", for contrast), and non-garment objects of kinds never trained on. Rendered once
(~3,400 pictures) and cached under the user cache, keyed on the renderer's and the conversion's source.

`regression(candidate, baseline)` is the gate `fmnist promote` and `fmnist rollout start` apply: a
candidate that is worse than the model it would replace on any held-out family by more than the
noise (a paired comparison on the same pictures: the mean difference below -2 standard errors) is
refused unless told --force.
"""

from __future__ import annotations

import numpy as np

from fmnist.calibration import Calibration
from fmnist.fileio import atomic_path
from fmnist.labels import CLASSES

PER_CLASS = 50  # pictures per class per family
N_OBJECTS = 400


def load(per_class: int = PER_CLASS, n_objects: int = N_OBJECTS) -> dict:
    """{"families": {name: (pixels, labels)}, "objects": (pixels, kinds)}, rendered once and cached."""
    from fmnist.data import user_cache_dir
    from fmnist.pictures.garments import objects, render, shapes
    from fmnist.pictures.styles import cache_key, progress_log

    key = cache_key(modules=(render, shapes, objects))
    path = user_cache_dir() / "pictures" / f"garment-bench-{per_class}-{n_objects}-{key}.npz"
    if not path.is_file():
        progress_log.info("drawing the garment benchmark: %d families x %d pictures, %d objects (once: cached in %s)",
                          1 + len(render.HELD_OUT), 10 * per_class, n_objects, path.parent)
        fams = render.validation_families(per_class)
        opx, kinds = render.validation_objects(n_objects)
        try:
            arrays = {f"{k}__px": v[0] for k, v in fams.items()} | {f"{k}__y": v[1] for k, v in fams.items()}
            with atomic_path(path) as tmp:
                np.savez_compressed(tmp, objects__px=opx, objects__kinds=np.array(kinds), **arrays)
        except OSError as e:  # a read-only home (a container): use it uncached
            progress_log.info("garment benchmark not cached (%s)", e)
            return {"families": {n: fams[n] for n in ["seen", *sorted(set(fams) - {"seen"})]}, "objects": (opx, kinds)}
    with np.load(path) as z:
        names = sorted({k.split("__")[0] for k in z.files} - {"objects"})
        return {"families": {n: (z[f"{n}__px"], z[f"{n}__y"]) for n in ["seen", *sorted(set(names) - {"seen"})]},
                "objects": (z["objects__px"], z["objects__kinds"].tolist())}


def _family(right: np.ndarray, y: np.ndarray, answered: "np.ndarray | None" = None) -> dict:
    """One family's figures from its per-picture right/wrong (kept for the paired gate) and, where the model's
    flags were applied, which pictures it answered."""
    return {
        "accuracy": float(right.mean()), "n": int(len(y)),
        "per_class": {c: float(right[y == k].mean()) for k, c in enumerate(CLASSES) if (y == k).any()},
        "coverage": float(answered.mean()) if answered is not None else None,
        "answered_accuracy": float(right[answered].mean()) if answered is not None and answered.any() else None,
        "right": right,
    }


def report(logits_fn, calibration: "Calibration | None", bench: dict) -> dict:
    """Per family: accuracy, per-class accuracy, answered share and accuracy (with the model's flags), and the
    per-picture right/wrong (for the paired gate); on the objects: the share flagged and, of those answered,
    which class they were called (false accepts)."""
    cal = calibration or Calibration()
    fams = {}
    for name, (px, y) in bench["families"].items():
        p = cal.probabilities(logits_fn(px))
        right = p.argmax(1) == y
        fams[name] = _family(right, y, np.array([f is None for f in cal.flags(p)]))
    opx, kinds = bench["objects"]
    p = cal.probabilities(logits_fn(opx))
    flags = cal.flags(p)
    not_flagged = np.array([f is None for f in flags])
    ood = np.array([f == "not_a_garment" for f in flags])
    called = p.argmax(1)
    return {
        "families": fams,
        "held_out": [n for n in fams if n != "seen"],
        "objects": {
            "n": len(kinds), "flagged": float(1 - not_flagged.mean()), "not_a_garment": float(ood.mean()),
            "false_accepts": {c: int((called[not_flagged] == k).sum()) for k, c in enumerate(CLASSES)},
            "per_kind_flagged": {k: float(1 - not_flagged[[i for i, kk in enumerate(kinds) if kk == k]].mean())
                                 for k in sorted(set(kinds))},
        },
    }


def regression(candidate: dict, baseline: dict, sigmas: float = 2.0) -> list:
    """[(family, candidate accuracy, baseline accuracy, noise)] for each held-out family on which the candidate
    is worse than the baseline by more than `sigmas` standard errors of the paired difference."""
    out = []
    for name in candidate["held_out"]:
        a, b = candidate["families"][name]["right"], baseline["families"][name]["right"]
        d = a.astype(np.float64) - b.astype(np.float64)
        se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
        if d.mean() < 0 and d.mean() < -sigmas * se:
            out.append((name, float(a.mean()), float(b.mean()), sigmas * se))
    return out


def add_picture_styles(rep: dict, logits_fn, pictures: dict) -> dict:
    """The picture benchmark's held-out styles (fmnist.pictures.styles: lineart, cluttered, onphoto; test images
    restyled, never drawn by the recipe) as more held-out families of `rep` ("pictures:STYLE"): the gate
    then guards those sources too."""
    from fmnist.pictures.styles import STYLES

    y = pictures["labels"]
    for st in (s.name for s in STYLES if s.held_out):
        rep["families"][f"pictures:{st}"] = _family(logits_fn(pictures["pictures"][st]).argmax(1) == y, y)
        rep["held_out"].append(f"pictures:{st}")
    return rep


def artifact_report(art, bench: "dict | None" = None, pictures: "dict | None" = None) -> dict:
    """report() for an artifact (ONNX Runtime, its own calibration); with `pictures` (the picture benchmark,
    fmnist.evaluation.picture_benchmark.load_benchmark), its held-out styles too."""
    from fmnist.evaluation.evaluate import artifact_logits

    rep = report(lambda px: artifact_logits(art, px), Calibration.from_dict(art.manifest.get("calibration")),
                 bench or load())
    if pictures is not None:
        add_picture_styles(rep, lambda px: artifact_logits(art, px), pictures)
    return rep


def gate(candidate, current, data_dir=None) -> tuple:
    """(failures, notes): `candidate` against `current` (artifacts) on every held-out source: the garment families,
    and the picture benchmark's held-out styles where the dataset is at hand. A candidate that cannot run raises; a
    current model that cannot run is not compared (failures None: a broken production must not block its own
    replacement)."""
    from fmnist import data
    from fmnist.evaluation.picture_benchmark import load_benchmark

    bench, pictures, notes = load(), None, []
    try:
        pictures = load_benchmark(data.load(data_dir, allow_download=False))
    except (FileNotFoundError, data.DatasetError) as e:
        notes.append(f"no dataset here ({e}); the picture benchmark's styles are not compared")
    new = artifact_report(candidate, bench, pictures)
    try:
        old = artifact_report(current, bench, pictures)
    except Exception as e:  # noqa: BLE001
        return None, notes + [f"production {current.ref} could not be evaluated ({e}); not compared"]
    return regression(new, old), notes


def format_table(rows: list) -> str:
    """rows: [(label, report)]: accuracy per family (held-out marked), answered, and the objects' flag."""
    fams = list(rows[0][1]["families"])
    w = [max(9, len(f) + 2) for f in fams]
    head = f"{'model':<16}" + "".join(f"{f + ('*' if f != 'seen' else ''):>{k}}" for f, k in zip(fams, w)) \
        + f"{'objects flagged':>17}"
    lines = [head]
    for label, rep in rows:
        lines.append(f"{label:<16}" + "".join(f"{rep['families'][f]['accuracy']:>{k}.1%}" for f, k in zip(fams, w))
                     + f"{rep['objects']['flagged']:>17.1%}")
    lines.append("* held out whole from training: each class's last cut, the sticker style, the held-out photographs"
                 + ("; pictures:STYLE = the picture benchmark's held-out styles" if any(":" in f for f in fams) else ""))
    return "\n".join(lines)


def format_gate(failures: list, candidate: str, baseline: str) -> str:
    if not failures:
        return f"garment gate: {candidate} is no worse than {baseline} on any held-out family (beyond the noise)"
    parts = "; ".join(f"{n} {a:.1%} vs {b:.1%} (noise {s:.1%})" for n, a, b, s in failures)
    return f"garment gate: {candidate} is worse than {baseline} on {parts}"


def format_report(rep: dict) -> str:
    """One model's garment benchmark, as `fmnist evaluate --garments` prints it."""
    fams = [f for f in rep["families"] if not f.startswith("pictures:")]
    lines = ["garment benchmark: parametric garments (fmnist.pictures.garments), 'seen' = the training families drawn afresh, "
             "the rest held out whole from training", "",
             f"{'class':<13}" + "".join(f"{f:>17}" for f in fams)]
    for c in CLASSES:
        lines.append(f"{c:<13}" + "".join(f"{rep['families'][f]['per_class'].get(c, float('nan')):>17.1%}" for f in fams))
    for key, label in (("accuracy", "all"), ("coverage", "answered"), ("answered_accuracy", "right if answered")):
        lines.append(f"{label:<13}" + "".join(f"{rep['families'][f][key]:>17.1%}" if rep['families'][f][key] is not None
                                              else f"{'-':>17}" for f in fams))
    o = rep["objects"]
    fa = ", ".join(f"{c} {n}" for c, n in o["false_accepts"].items() if n)
    lines += ["", f"non-garment objects of kinds never trained on ({o['n']}): {o['flagged']:.1%} flagged "
                  f"({o['not_a_garment']:.1%} not_a_garment); answered as: {fa or 'none'}",
              "  flagged per kind: " + ", ".join(f"{k} {v:.0%}" for k, v in o["per_kind_flagged"].items())]
    return "\n".join(lines)


def markdown_section(rows: list) -> list:
    """The comparison report's section: [(label, report)], the first row the baseline the gate compares with."""
    fams = list(rows[0][1]["families"])
    lines = ["", "## Garments nobody drew from the dataset (the garment gate)", "",
             "Parametric garments (`fmnist.pictures.garments`: cuts and styles drawn from parameters, not traced from "
             "Fashion-MNIST), 50 per class per family. *Held out*: families no training run sees (each class's last "
             "cut in three styles and on held-out photographs, the sticker style, the held-out photographs). "
             "Objects: non-garment things of kinds never trained on; flagged = not answered.", "",
             "| model | " + " | ".join(f + (" (held out)" if f != "seen" else "") for f in fams)
             + " | objects flagged | objects called Bag | gate vs " + rows[0][0] + " |",
             "|---|" + "---:|" * (len(fams) + 3)]
    for label, rep in rows:
        fails = regression(rep, rows[0][1]) if rep is not rows[0][1] else []
        gate = "—" if rep is rows[0][1] else ("worse on " + ", ".join(f[0] for f in fails) if fails else "pass")
        lines.append(f"| {label} | " + " | ".join(f"{rep['families'][f]['accuracy']:.1%}" for f in fams)
                     + f" | {rep['objects']['flagged']:.1%} | {rep['objects']['false_accepts']['Bag']} | {gate} |")
    return lines
