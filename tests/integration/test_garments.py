"""The parametric garment source (fmnist.pictures.garments), its held-out families, the garment benchmark and the gate."""

import json
import shutil

import numpy as np
import pytest

from fmnist.images.preprocess import to_model_pixels
from fmnist.pictures.garments import render
from fmnist.pictures.garments.objects import EVAL_OBJECTS, TRAIN_OBJECTS
from fmnist.pictures.garments.shapes import CUTS
from fmnist.pictures.styles import image_rng
from tests.conftest import REPO


def test_every_cut_of_every_class_renders_in_every_style_and_converts():
    for label, cuts in CUTS.items():
        assert len(cuts) >= 3, label  # two that train, one held out
        for c in range(len(cuts)):
            for style in render.STYLES:
                im = render.garment(label, c, style, image_rng(1, label * 10 + c, style))
                px = to_model_pixels(im, "auto")
                assert px.shape == (28, 28) and px.dtype == np.uint8
                # something was kept (a flip-flop seen from the side is a thin strip)
                assert (px > 40).mean() > 0.02, (label, cuts[c].__name__, style)
    a = to_model_pixels(render.garment(4, 1, "photo", image_rng(2, 0)), "auto")
    b = to_model_pixels(render.garment(4, 1, "photo", image_rng(2, 0)), "auto")
    assert np.array_equal(a, b)  # a fixed generator draws the same picture


def test_objects_render_and_the_two_kinds_of_objects_share_nothing():
    assert not set(TRAIN_OBJECTS) & set(EVAL_OBJECTS)
    assert not {f.__name__ for f in TRAIN_OBJECTS.values()} & {f.__name__ for f in EVAL_OBJECTS.values()}
    px, kinds = render.object_pixels(EVAL_OBJECTS, 16, 3, "held_out")
    assert px.shape == (16, 28, 28) and set(kinds) == set(EVAL_OBJECTS)


def test_training_never_draws_a_held_out_family():
    held = {(y, len(CUTS[y]) - 1) for y in CUTS}
    _, ys, cuts, styles = render.family_pixels(render.SEEN, 6, 11)
    assert not {(int(y), int(c)) for y, c in zip(ys, cuts)} & held
    assert set(styles) <= set(render.TRAIN_STYLES) and "sticker" not in render.TRAIN_STYLES
    assert render.SEEN[2] == "train"  # the training photographs only
    _, ys, cuts, _ = render.family_pixels(render.HELD_OUT["unseen_cut"], 3, 12)
    assert {(int(y), int(c)) for y, c in zip(ys, cuts)} <= held
    assert np.bincount(ys, minlength=10).tolist() == [3] * 10


def test_validation_families_are_the_same_however_the_work_is_split():
    one = render.validation_families(per_class=2, workers=1)
    two = render.validation_families(per_class=2, workers=2)
    assert list(one) == ["seen", *render.HELD_OUT]
    for k in one:
        assert np.array_equal(one[k][0], two[k][0]) and np.array_equal(one[k][1], two[k][1])


def test_the_benchmark_works_where_the_cache_cannot_be_written(tmp_path, monkeypatch):
    from fmnist.evaluation import garment_benchmark as gb

    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "file"))  # a read-only home (a container), in effect
    bench = gb.load(per_class=1, n_objects=4)
    assert list(bench["families"]) == ["seen", *sorted(render.HELD_OUT)]
    assert bench["families"]["seen"][0].shape == (10, 28, 28) and len(bench["objects"][1]) == 4


def test_the_gate_refuses_only_a_difference_beyond_the_noise():
    from fmnist.evaluation.garment_benchmark import regression

    rng = np.random.default_rng(0)
    base_right = rng.random(500) < 0.7

    def rep(right):
        return {"held_out": ["fam"], "families": {"fam": {"right": right}}}

    worse = base_right.copy()
    worse[np.flatnonzero(base_right)[:60]] = False  # 12 points fewer, on the same pictures
    slightly = base_right.copy()
    slightly[np.flatnonzero(base_right)[:3]] = False  # three pictures: noise
    assert regression(rep(worse), rep(base_right))[0][0] == "fam"
    assert regression(rep(slightly), rep(base_right)) == []
    assert regression(rep(base_right), rep(worse)) == []  # better is never refused


@pytest.mark.slow
def test_promote_and_rollout_refuse_a_model_worse_on_held_out_garments(tmp_path, capsys):
    """smallcnn:1 (no pictures in its training) would replace smallcnn:4: the gate compares them on the held-out
    families (the benchmark is drawn once, then cached) and refuses; --force goes ahead and says so."""
    from fmnist import cli
    from fmnist.registry import production_version

    for v in ("1", "4"):
        shutil.copytree(REPO / "models" / "smallcnn" / v, tmp_path / "smallcnn" / v)
    root = str(tmp_path)
    assert cli.main(["promote", "smallcnn", "4", "--registry", root]) == 0
    capsys.readouterr()
    assert cli.main(["promote", "smallcnn", "1", "--registry", root]) == 2
    err = capsys.readouterr().err
    assert "garment gate: smallcnn:1 is worse than smallcnn:4 on" in err and "--force" in err, err
    assert production_version(root, "smallcnn") == "4"
    assert cli.main(["rollout", "start", "smallcnn", "1", "--canary", "10", "--registry", root]) == 2
    assert not (tmp_path / "smallcnn" / "rollout.json").exists()
    assert cli.main(["promote", "smallcnn", "1", "--force", "--registry", root]) == 0
    assert "garment gate skipped (--force)" in capsys.readouterr().err
    assert production_version(root, "smallcnn") == "1"
    assert cli.main(["promote", "smallcnn", "4", "--registry", root]) == 0  # better: passes
    assert "no worse than smallcnn:1" in capsys.readouterr().err


@pytest.mark.slow
def test_evaluate_garments_from_the_command_line(capsys):
    from fmnist import cli

    assert cli.main(["evaluate", "smallcnn:4", "--registry", str(REPO / "models"), "--limit", "200", "--garments",
                     "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)["garments"]
    assert set(rep["families"]) == {"seen", *render.HELD_OUT}
    assert all(0.2 < f["accuracy"] <= 1 for f in rep["families"].values())
    assert sum(rep["objects"]["false_accepts"].values()) + round(rep["objects"]["flagged"] * rep["objects"]["n"]) \
        == rep["objects"]["n"]


@pytest.mark.realdata
@pytest.mark.integration
def test_fine_tune_with_parametric_garments_and_objects_through_the_cli(real_data, tmp_path):
    """--init starts from an artifact's weights (one short epoch keeps most of smallcnn:4's accuracy, where a random
    start reaches far less); --garments and --objects render their pools once into the cache."""
    import os
    import subprocess
    import sys

    reg, env = tmp_path / "reg", {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    base = [sys.executable, "-m", "fmnist.cli", "train", "--arch", "smallcnn", "--train-limit", "600", "--eval-limit",
            "300", "--epochs", "1", "--lr", "1e-4", "--pictures", "0", "--garments", "0.25", "--objects", "0.5",
            "--keep", "last", "--registry", str(reg), "--quiet"]
    out = subprocess.run(base + ["--init", str(REPO / "models" / "smallcnn" / "4")], capture_output=True, text=True,
                         timeout=600, env=env)
    assert out.returncode == 0, out.stderr
    manifest = json.loads((reg / "smallcnn" / "1" / "manifest.json").read_text())
    cfg = manifest["training"]["config"]
    assert cfg["garments"] == 0.25 and cfg["objects"] == 0.5 and cfg["init"].endswith("smallcnn/4")
    assert manifest["metrics"]["test"]["accuracy"] > 0.85
    assert list((tmp_path / "cache").rglob("garments-500-*.npy")) and list((tmp_path / "cache").rglob("objects-250-*"))
    wrong = subprocess.run(base + ["--init", str(REPO / "models" / "lenet" / "1")], capture_output=True, text=True,
                           timeout=300, env=env)
    assert wrong.returncode != 0 and "do not fit smallcnn" in wrong.stderr, wrong.stderr
