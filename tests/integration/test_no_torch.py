"""The serving path must import and serve without torch (`pip install fmnist[serve]` brings none)."""

import os
import subprocess
import sys

import pytest

from tests.conftest import SHIPPED

pytestmark = pytest.mark.integration  # starts real processes

SCRIPT = f"""
import builtins, sys
real_import = builtins.__import__
def guarded(name, *a, **k):
    if name == "torch" or name.startswith("torch."):
        raise ImportError("torch is not installed (blocked by the test)")
    return real_import(name, *a, **k)
builtins.__import__ = guarded
from fmnist.serving import create_app
import io, numpy as np
from PIL import Image
app = create_app({{"model": "{SHIPPED}", "log_requests": False, "prediction_log": sys.argv[1]}})
buf = io.BytesIO(); Image.fromarray(np.zeros((28, 28), np.uint8)).save(buf, "PNG")
r = app.test_client().post("/predict", data={{"image": (io.BytesIO(buf.getvalue()), "x.png")}})
assert r.status_code == 200, r.get_data(as_text=True)
assert app.test_client().get("/metrics").status_code == 200
assert "torch" not in sys.modules
print("ok")
"""


def test_serving_needs_no_torch(tmp_path):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "p.sqlite")], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]


def test_batch_needs_no_torch(tmp_path):
    """fmnist batch runs on the serve extra alone (torch blocked): the same ONNX Runtime model as serving."""
    import numpy as np

    np.save(tmp_path / "x.npy", np.zeros((5, 28, 28), np.uint8))
    script = SCRIPT.split("from fmnist.serving import create_app")[0] + f"""
from fmnist.cli import main
rc = main(["batch", sys.argv[1], "--model", "{SHIPPED}", "--out", sys.argv[2], "--quiet", "--workers", "1"])
assert rc == 0 and "torch" not in sys.modules
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "x.npy"), str(tmp_path / "r.jsonl")],
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stderr[-2000:]
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == 5


BLOCKED_CLI = """
import builtins, sys
real_import = builtins.__import__
def guarded(name, *a, **k):
    if name.partition(".")[0] in ("torch", "matplotlib"):
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    return real_import(name, *a, **k)
builtins.__import__ = guarded
from fmnist.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("argv", [["archs"], ["train", "--arch", "mlp", "--epochs", "1"], ["compare", "mlp", "--out", "r"],
                                  ["export", "smallcnn", "--format", "pth", "--output", "x.pth"]])
def test_a_command_that_needs_the_train_extra_says_so_in_one_line(argv, tmp_path):
    """In the `make run` set-up (no torch), the training commands stop at once with the command that
    installs what they need, never a ModuleNotFoundError traceback (issue 31)."""
    from tests.conftest import REPO

    proc = subprocess.run([sys.executable, "-c", BLOCKED_CLI, *argv], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "FMNIST_MODELS": str(REPO / "models")})
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "make setup-train" in lines[0] and "Traceback" not in proc.stderr, proc.stderr
