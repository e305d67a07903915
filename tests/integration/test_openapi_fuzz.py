"""The served OpenAPI document is exact: Schemathesis, an independent API fuzzer, reads /openapi.json from a
real server with a key file and sends what the document allows and what it forbids (`--checks all`: no 5xx,
schema-valid requests accepted, schema-violating ones refused, every status and answer documented), with a key
of every scope, and finds nothing. tests/schemathesis_hooks.py says what JSON Schema cannot (a picture must be
one; a tensor's data has shape[0] x 784 values).

Seeds are fixed so that a failure is reproducible (`FMNIST_ST_SEED` picks another). POST /predict skips the
coverage phase: its boundary cases (64 images of 28 x 28 pixel lists) take Schemathesis minutes to generate, not
the server; every other phase runs on it, and the coverage phase on every other operation."""

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from fmnist.serving import auth
from tests.conftest import REPO, running_server

pytest.importorskip("schemathesis")
ST = Path(sys.executable).parent / "st"
SEED = os.environ.get("FMNIST_ST_SEED", "1")


def _st(target: str, url: str, key: str, workdir: Path, *args: str) -> str:
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.schemathesis_hooks",
           "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    cmd = [str(ST), "run", target, "--url", url, "--checks", "all", "--seed", SEED, "--generation-database", "none",
           "--request-timeout", "10", "-H", f"Authorization: Bearer {key}", *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=workdir, timeout=300)
    report = out.stdout + out.stderr
    assert out.returncode == 0, f"{' '.join(cmd[:3])} {' '.join(args)}: Schemathesis found failures\n{report[-6000:]}"
    assert "generated" in report and " passed" in report, report[-2000:]
    return report


def test_schemathesis_finds_no_failure_with_a_key_of_every_scope(tmp_path):
    keys = tmp_path / "keys.json"
    every = auth.create(keys, "all", list(auth.SCOPES), rate=0, image_rate=0)
    single = {scope: auth.create(keys, scope, [scope]) for scope in auth.SCOPES}
    with running_server(tmp_path, "--api-keys", str(keys), workers=1) as srv:
        url = srv["url"]
        req = urllib.request.Request(url + "/openapi.json", headers={"Authorization": f"Bearer {every}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            spec = json.loads(r.read())
        document = tmp_path / "openapi.json"  # a key without 'predict' cannot read it from the server
        document.write_text(json.dumps(spec))
        phases = "examples,coverage,fuzzing,stateful"
        _st(str(document), url, every, tmp_path, "--phases", phases, "--max-examples", "25", "--exclude-path", "/predict")
        _st(str(document), url, every, tmp_path, "--phases", "examples,fuzzing,stateful", "--max-examples", "25",
            "--include-path", "/predict")
        for key in single.values():  # each route either answers or refuses as documented (403: a scope short)
            _st(str(document), url, key, tmp_path, "--phases", "examples,fuzzing", "--max-examples", "5")
        assert "Traceback" not in srv["log"].read_text()
