"""Label and flag from different models: what each pairing buys, and what it costs.

    python bench/label_flag.py LABEL_MODEL FLAG_MODEL [...]   e.g. smallcnn:6 smallcnn:5 vgg:2

For every pair (label from the first, "not a garment" from the second, each with its own calibration),
and for each model alone, on the held-out garment families, the held-out non-garment objects, the
out-of-distribution benchmark (fmnist.pictures.outliers) and the real test set: accuracy, the share answered,
accuracy among answered, the share of non-garments flagged, test images flagged; and the per-image
model cost of the pairing (ONNX Runtime, one thread, batch 1) against the label model alone, measured
in the same run.
"""

from __future__ import annotations

import sys
import time

import numpy as np


def _cost_us(art) -> float:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(art.path / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    x = np.zeros((1, 1, 28, 28), np.float32)
    for _ in range(50):
        sess.run(None, {"input": x})
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(500):
            sess.run(None, {"input": x})
        best = min(best, (time.perf_counter() - t0) / 500 * 1e6)
    return best


def main(refs: list) -> None:
    from fmnist import data
    from fmnist.calibration import Calibration
    from fmnist.evaluation import garment_benchmark as gb
    from fmnist.evaluation.evaluate import artifact_logits
    from fmnist.pictures.outliers import ood_benchmark
    from fmnist.registry import resolve

    ds = data.load(allow_download=False)
    bench = gb.load()
    held = [bench["families"][f] for f in bench["families"] if f != "seen"]
    gx, gy = np.concatenate([p for p, _ in held]), np.concatenate([y for _, y in held])
    non = np.concatenate([bench["objects"][0], *ood_benchmark().values()])
    arts = [resolve(r) for r in refs]
    out = {}
    for a in arts:
        cal = Calibration.from_dict(a.manifest.get("calibration")) or Calibration()
        res = {}
        for name, px in (("garments", gx), ("non", non), ("test", ds.test_images)):
            p = cal.probabilities(artifact_logits(a, px))
            ood = cal.ood_scores(p) >= cal.ood_above
            res[name] = (p.argmax(1), ood, p.max(1) < cal.unsure_below)  # label, not a garment, unsure
        out[a.ref] = res
        out[a.ref]["cost"] = _cost_us(a)
    print(f"{'label from':<13}{'flag from':<13}{'held-out acc':>13}{'answered':>10}{'right if ans.':>14}"
          f"{'non-garm. flagged':>18}{'test flagged':>13}{'(not garm.)':>12}{'test acc':>9}{'cost':>7}")
    pairs = [(a.ref, a.ref) for a in arts] + [(arts[0].ref, b.ref) for b in arts[1:]]
    for lab, flag in pairs:
        # answered: not "not a garment" by the flag model, and not "unsure" by the label model
        pred, _, unsure = out[lab]["garments"]
        ans = ~out[flag]["garments"][1] & ~unsure
        right = pred == gy
        non_flagged = out[flag]["non"][1] | out[lab]["non"][2]
        test_flag = out[flag]["test"][1] | out[lab]["test"][2]
        cost = (out[lab]["cost"] + (out[flag]["cost"] if flag != lab else 0)) / out[lab]["cost"]
        print(f"{lab:<13}{flag:<13}{right.mean():>13.1%}{ans.mean():>10.1%}{right[ans].mean():>14.1%}"
              f"{non_flagged.mean():>18.1%}{test_flag.mean():>13.1%}{out[flag]['test'][1].mean():>12.1%}"
              f"{np.mean(out[lab]['test'][0] == ds.test_labels):>9.2%}{cost:>6.2f}x")
    print("(cost: model time per image, batch 1, against the label model alone; "
          + ", ".join(f"{r} {out[r]['cost']:.0f} us" for r in out) + ")")


if __name__ == "__main__":
    main(sys.argv[1:] or ["smallcnn", "vgg:2"])
