"""The garment yardstick for a set of models, with what a reader needs to trust it.

    python bench/garments.py smallcnn:4 smallcnn:5 [more models...]   (the first is the baseline of the gate)

Prints, for the parametric garment benchmark (fmnist.evaluation.garment_benchmark):
1. how far each family is from the dataset: the mean distance of its 28x28 conversions to their nearest
   training image (pixels 0-1, Euclidean), against the same for real test images, and how often that
   nearest training image has the picture's label (a 1-NN classifier on the dataset);
2. per model and family: accuracy, per class, answered share and accuracy among answered, objects flagged
   and what unflagged objects were called, and the gate against the first model;
3. the coverage/accuracy curve over all held-out families (answers most confident first).
"""

from __future__ import annotations

import sys

import numpy as np


def nearest(train: np.ndarray, train_y: np.ndarray, px: np.ndarray) -> tuple:
    """(distance to the nearest training image, its label) for each of px (uint8 (N, 28, 28))."""
    t = train.reshape(len(train), -1).astype(np.float32) / 255
    tn = (t * t).sum(1)
    dist, lab = [], []
    for s in range(0, len(px), 250):
        q = px[s:s + 250].reshape(-1, 784).astype(np.float32) / 255
        d2 = (q * q).sum(1)[:, None] + tn[None, :] - 2 * q @ t.T
        k = d2.argmin(1)
        dist.append(np.sqrt(np.maximum(d2[np.arange(len(q)), k], 0)))
        lab.append(train_y[k])
    return np.concatenate(dist), np.concatenate(lab)


def main(refs: list) -> None:
    from fmnist import data
    from fmnist.calibration import accuracy_by_confidence
    from fmnist.evaluation import garment_benchmark as gb
    from fmnist.evaluation.evaluate import artifact_logits
    from fmnist.registry import resolve

    ds = data.load(allow_download=False)
    (tr_x, tr_y), _ = ds.split()
    bench = gb.load()
    from fmnist.evaluation.picture_benchmark import load_benchmark

    pictures = load_benchmark(ds)
    print("1. distance from the dataset (nearest of the 55,000 training images)")
    d, lab = nearest(tr_x, tr_y, ds.test_images[:500])
    same = np.mean(lab == ds.test_labels[:500])
    print(f"   {'real test images':<18} mean distance {d.mean():.2f}   nearest has its label {same:.1%}")
    for name, (px, y) in bench["families"].items():
        d, lab = nearest(tr_x, tr_y, px)
        print(f"   {name:<18} mean distance {d.mean():.2f}   nearest has its label {np.mean(lab == y):.1%}")
    reps = []
    for ref in refs:
        art = resolve(ref)
        reps.append((art.ref, gb.artifact_report(art, bench, pictures), art))
    print("\n2. per model")
    print(gb.format_table([(r, rep) for r, rep, _ in reps]))
    for ref, rep, _ in reps:
        print(f"\n{ref}\n" + gb.format_report(rep))
        if rep is not reps[0][1]:
            print(gb.format_gate(gb.regression(rep, reps[0][1]), ref, reps[0][0]))
    print("\n3. coverage / accuracy over the held-out families (answers most confident first)")
    print(f"   {'model':<14}" + "".join(f"{c:>8.0%}" for c in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)))
    for ref, rep, art in reps:
        from fmnist.calibration import Calibration

        cal = Calibration.from_dict(art.manifest.get("calibration")) or Calibration()
        held = [bench["families"][f] for f in rep["held_out"] if f in bench["families"]]
        p = cal.probabilities(np.concatenate([artifact_logits(art, px) for px, _ in held]))
        y = np.concatenate([y for _, y in held])
        _, acc = accuracy_by_confidence(p.max(1), p.argmax(1) == y)
        print(f"   {ref:<14}" + "".join(f"{acc[int(c * len(acc)) - 1]:>8.1%}" for c in (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)))


if __name__ == "__main__":
    main(sys.argv[1:] or ["smallcnn:4", "smallcnn"])
