"""Pictures: the renderer (fmnist.pictures.styles), the conversion's picture fixes (gradient backgrounds, line
art), the picture benchmark and the training recipe's picture mix and distillation."""
import json
import subprocess
import sys

import pytest

from fmnist.pictures import styles as P
from tests.conftest import REPO


@pytest.mark.realdata
@pytest.mark.integration
def test_evaluate_pictures_from_the_command_line(real_data):
    out = subprocess.run([sys.executable, "-m", "fmnist.cli", "evaluate", str(REPO / "models" / "smallcnn" / "1"),
                          "--pictures", "--limit", "100", "--json"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    assert rep["n"] == 100 and rep["pictures"]["n_per_style"] == 100
    assert set(rep["pictures"]["styles"]) == set(P.STYLE_NAMES)


@pytest.mark.realdata
@pytest.mark.integration
def test_picture_recipe_trains_through_the_cli(real_data, tmp_path):
    reg = tmp_path / "reg"
    out = subprocess.run([sys.executable, "-m", "fmnist.cli", "train", "--arch", "lenet", "--name", "pic",
                          "--train-limit", "600", "--eval-limit", "300", "--epochs", "1", "--pictures", "0.5",
                          "--picture-variants", "1", "--elastic", "0.3", "--distill", str(REPO / "models" / "mlp" / "1"),
                          "--registry", str(reg), "--quiet"],
                         capture_output=True, text=True, timeout=600, env={**__import__("os").environ,
                                                                           "XDG_CACHE_HOME": str(tmp_path / "cache")})
    assert out.returncode == 0, out.stderr
    manifest = json.loads((reg / "pic" / "1" / "manifest.json").read_text())
    cfg = manifest["training"]["config"]
    assert cfg["pictures"] == 0.5 and cfg["distill"].endswith("mlp/1") and cfg["elastic"] == 0.3
    assert list((tmp_path / "cache").rglob("bank-600-*.npy"))  # the round trips were rendered and cached
    missing = subprocess.run([sys.executable, "-m", "fmnist.cli", "train", "--arch", "lenet", "--train-limit", "100",
                              "--distill", "no-such-model", "--registry", str(reg), "--quiet"],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "no-such-model" in missing.stderr
