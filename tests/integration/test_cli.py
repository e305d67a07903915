"""The `fmnist` command as a user runs it: a real subprocess, real files."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration  # starts real processes


def fmnist(*args, env=None, check=True):
    proc = subprocess.run([sys.executable, "-m", "fmnist.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"fmnist {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


def test_unknown_arch_is_a_clear_error(registry):
    proc = fmnist("train", "--arch", "resnet", check=False)
    assert proc.returncode == 2
    assert "unknown --arch 'resnet': known models are alexnet, lenet, mlp, smallcnn, vgg" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_model_reference_is_a_clear_error(registry):
    proc = fmnist("evaluate", "nosuchmodel", check=False)
    assert proc.returncode == 2 and "no model named 'nosuchmodel'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_bad_kwargs_json(registry):
    proc = fmnist("train", "--arch", "mlp", "--kwargs", "{hidden", check=False)
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr


def test_threads_without_the_gthread_worker_is_a_clear_error(registry, tmp_path):
    for args in (("serve", "--threads", "4"), ("cluster", "up", "--threads", "4", "--state-dir", str(tmp_path))):
        proc = fmnist(*args, check=False)
        assert proc.returncode == 2 and "--threads is for --worker gthread" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


@pytest.mark.realdata
def test_data_command(real_data):
    out = json.loads(fmnist("data", "--json").stdout)
    assert out["counts"] == {"train": 55000, "val": 5000, "test": 10000} and out["verified"]
    text = fmnist("data").stdout
    assert "checksums verified" in text and "Ankle boot" in text


@pytest.mark.realdata
@pytest.mark.slow
def test_train_evaluate_export_import_explain_compare(real_data, registry, tmp_path):
    out = fmnist("train", "--arch", "lenet", "--epochs", "1", "--train-limit", "2000", "--eval-limit", "500",
                 "--threads", "1", "--quiet").stdout
    assert "saved lenet:1" in out
    m = json.loads((registry / "lenet" / "1" / "manifest.json").read_text())
    assert m["training"]["command"].startswith("fmnist train --arch lenet")
    assert len(m["training"]["history"]) == 1 and m["training"]["dataset"]["checksums_sha256"]
    assert m["metrics"]["test"]["n"] == 500

    fmnist("train", "--arch", "mlp", "--epochs", "1", "--train-limit", "2000", "--eval-limit", "500",
           "--threads", "1", "--quiet")

    report = json.loads(fmnist("evaluate", "lenet", "--json", "--limit", "500").stdout)
    assert report["accuracy"] == pytest.approx(m["metrics"]["test"]["accuracy"], abs=1e-9)
    assert len(report["confusion_matrix"]) == 10 and "Shirt" in report["per_class"]
    table = fmnist("evaluate", "lenet:1", "--limit", "500", "--backend", "torch").stdout
    assert "macro-F1" in table and "confusion matrix" in table

    pth = tmp_path / "lenet.pth"
    fmnist("export", "lenet", "--format", "pth", "-o", str(pth))
    out = fmnist("import", str(pth), "--arch", "lenet", "--name", "lenet-imported",
                 "--mean", str(m["preprocessing"]["mean"]), "--std", str(m["preprocessing"]["std"])).stdout
    assert "imported" in out
    imported = json.loads((registry / "lenet-imported" / "1" / "manifest.json").read_text())
    first_500 = json.loads(fmnist("evaluate", "lenet-imported", "--json", "--limit", "500").stdout)
    assert first_500["accuracy"] == report["accuracy"]
    assert imported["metrics"]["test"]["n"] == 10000

    listing = fmnist("models").stdout
    assert "lenet:1" in listing and "mlp:1" in listing

    exp = tmp_path / "explain"
    written = fmnist("filters", "lenet", "test:0", "--out", str(exp)).stdout.split()
    assert {os.path.basename(p) for p in written} == {
        "input.png", "filters.png", "feature_maps_conv.png", "feature_maps_relu.png", "feature_maps_pool.png",
        "lesson_numpy.png"}
    assert all(os.path.getsize(p) > 1000 for p in written)
    bad = fmnist("filters", "mlp", "test:0", "--out", str(exp), check=False)
    assert bad.returncode == 2 and "no convolution layer" in bad.stderr

    rep = tmp_path / "report"
    fmnist("compare", "mlp", "lenet", "--out", str(rep))
    md = (rep / "report.md").read_text()
    assert "Where the MLP fails" in md and "| lenet:1 |" in md and "Regenerate with: `fmnist compare mlp lenet" in md
    for fig in ("per_class_f1.png", "tradeoffs.png", "learning_curves.png", "confusion_matrices.png",
                "misclassified.png"):
        assert (rep / fig).stat().st_size > 5000


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(monkeypatch, capsys, registry):
    import fmnist.cli as cli
    import fmnist.cli.parser as parser

    assert cli.main(["promote", "nosuch", "1"]) == 2  # a user's mistake: one line, status 2
    err = capsys.readouterr().err
    assert err.startswith("fmnist promote: error: ") and err.count("\n") == 1 and "Traceback" not in err

    def buggy(args):
        return {}["oops"]  # a plain bug: a KeyError nobody meant

    monkeypatch.setattr(parser, "cmd_archs", buggy)
    with pytest.raises(KeyError, match="oops"):
        cli.main(["archs"])
