"""Fitting an artifact's calibration (fmnist.calibration) on the validation split, and writing it to its manifest.

The fit set is the 5,000 validation images (held out from training) twice: as the dataset gives them, and
each rendered once as a picture in a random training style (busy backgrounds included) and converted
back as /predict converts it: serving sees both. From its logits (the artifact's ONNX graph, so imported
models are calibrated the same way):

- the temperature (minimum NLL), and the expected calibration error before and after;
- the out-of-distribution reference: 101 quantiles of the answers' entropy; `not_a_garment` from the
  rank OOD_ABOVE (2 % of validation garments flagged, by construction);
- `unsure_below`: the lowest confidence at which the validation pictures' answers still reach
  UNSURE_TARGET accuracy among those kept.

The drift reference (manifest "reference") is recomputed with the calibrated probabilities, since live
confidences are calibrated too. No test image, and nothing reserved for independent checks, is used.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from fmnist import calibration as C
from fmnist.fileio import atomic_write
from fmnist.pictures import styles as P

VAL_PICTURE_SEED = 20_261_201
UNSURE_TARGET = 0.95
OOD_ABOVE = C.Calibration.ood_above


def _validation(ds, limit: "int | None") -> tuple[np.ndarray, np.ndarray]:
    _, (va_x, va_y) = ds.split()
    return (va_x[:limit], va_y[:limit]) if limit else (va_x, va_y)


def validation_pictures(ds, limit: "int | None" = None) -> tuple[np.ndarray, np.ndarray]:
    """The validation split (its first `limit` images), each once as a picture in a random training style:
    (uint8 (N,28,28), labels); rendered once and cached (keyed like the picture benchmark)."""
    from fmnist.data import user_cache_dir

    va_x, va_y = _validation(ds, limit)
    path = user_cache_dir() / "pictures" / f"validation-{len(va_x)}-{P.cache_key(va_x, va_y)}.npy"

    def render():
        rng = np.random.default_rng(VAL_PICTURE_SEED)
        styles = [P.TRAIN_STYLES[k] for k in rng.integers(len(P.TRAIN_STYLES), size=len(va_x))]
        return P.render_parallel(va_x, va_y, styles, VAL_PICTURE_SEED)

    return P.cached_array(path, render), va_y


def unsure_threshold(conf: np.ndarray, right: np.ndarray, target: float = UNSURE_TARGET) -> float:
    """The lowest confidence c such that the answers with confidence >= c are right at least `target` of the time."""
    order, acc = C.accuracy_by_confidence(conf, right)
    ok = np.nonzero(acc >= target)[0]
    if not len(ok):
        return 1.0
    return float(conf[order][ok[-1]])


def fit(logits_fn, ds, limit: "int | None" = None) -> tuple[C.Calibration, dict]:
    """(Calibration, drift reference) for a model given as logits_fn(uint8 (N, 28, 28)) -> logits (N, 10), on
    the validation split (its first `limit` images: a short training run's)."""
    from fmnist.evaluation.metrics import reference_statistics

    va_x, va_y = _validation(ds, limit)
    pics, _ = validation_pictures(ds, limit)
    z_raw, z_pic = np.asarray(logits_fn(va_x), np.float64), np.asarray(logits_fn(pics), np.float64)
    z, y = np.concatenate([z_raw, z_pic]), np.concatenate([va_y, va_y])
    t = C.fit_temperature(z, y)
    p = C.softmax_t(z, t)
    ref = np.quantile(C.entropy_share(p), np.linspace(0, 1, 101)).tolist()
    draft = C.Calibration(temperature=t, ood_reference=ref, ood_above=OOD_ABOVE)
    p_pic = p[len(z_raw):]
    kept = draft.ood_scores(p_pic) < OOD_ABOVE
    unsure = unsure_threshold(p_pic.max(axis=1)[kept], (p_pic.argmax(axis=1) == va_y)[kept])
    cal = C.Calibration(
        temperature=round(t, 5), ood_reference=[round(v, 6) for v in ref], ood_above=OOD_ABOVE,
        unsure_below=round(unsure, 5),
        ece={"before": round(C.expected_calibration_error(C.softmax_t(z, 1.0), y), 5),
             "after": round(C.expected_calibration_error(p, y), 5)},
        fitted_on=f"validation split ({len(va_x)} images held out from training) and the same images as pictures "
                  f"(seed {VAL_PICTURE_SEED})",
    )
    flags = cal.flags(p)
    cal = replace(cal, expected={f: round(float(np.mean([g == f for g in flags])), 5) for f in C.FLAGS})
    reference = reference_statistics(p[: len(z_raw)], va_x)
    reference["source"] = f"validation split ({len(va_x)} images held out from training), calibrated (T={t:.3f})"
    reference["flagged_share"] = cal.expected  # drift compares the live not_a_garment share with it
    return cal, reference


def calibrate_artifact(artifact, ds, limit: "int | None" = None):
    """Fit `artifact`'s calibration on `ds` and write it (and the recalibrated drift reference) to its manifest;
    returns the artifact read back, verified."""
    from fmnist.artifact import MANIFEST, read_artifact
    from fmnist.evaluation.evaluate import artifact_logits

    cal, reference = fit(lambda px: artifact_logits(artifact, px), ds, limit)
    manifest = dict(artifact.manifest)
    manifest["calibration"] = cal.to_dict()
    manifest["reference"] = reference
    path = artifact.path / MANIFEST
    atomic_write(path, json.dumps(manifest, indent=1))  # a reader sees the old manifest or the new one
    return read_artifact(artifact.path)
