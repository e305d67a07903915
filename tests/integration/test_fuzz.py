"""The fuzz campaign's part of `make test` (fuzz/README.md): every kept seed and every crash ever found replayed
through its target, a short coverage-guided run of each target (atheris, fixed seed), and a differential
check of our multipart reader against Werkzeug's on generated bodies (Hypothesis). `make fuzz` runs longer."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fmnist.serving import multipart
from fuzz.targets import BOUNDARY, TARGETS

REPO = Path(__file__).resolve().parents[2]
FUZZ = REPO / "fuzz"
# `make test` runs each target a fixed number of executions (a few seconds each on a slow machine) from a fixed
# seed and hash seed: the same inputs on every machine, so CI never fails on a find that depends on how fast it
# ran. Exploring is `make fuzz`'s (FUZZ_SECONDS each); what it finds is kept in fuzz/crashes and replayed above.
RUNS = {"multipart": 20_000, "image": 3_000, "json": 100_000, "v2": 100_000}


def _cases():
    for name in TARGETS:
        for kind in ("corpus", "crashes"):
            for path in sorted((FUZZ / kind / name).glob("*")):
                yield pytest.param(name, path, id=f"{name}/{kind}/{path.name[:24]}")


@pytest.mark.parametrize("target, path", list(_cases()))
def test_kept_inputs_pass_their_target(target, path):
    """Seeds and regression cases: each crash found once (fuzz/crashes) stays fixed."""
    TARGETS[target](path.read_bytes())


@pytest.mark.integration
@pytest.mark.parametrize("target", list(TARGETS))
def test_a_short_coverage_guided_run_finds_nothing(target, tmp_path):
    pytest.importorskip("atheris")
    env = {**os.environ, "FUZZ_WORK": str(tmp_path / "work"), "FUZZ_CRASHES": str(tmp_path / "crashes"),
           "PYTHONHASHSEED": "0"}
    out = subprocess.run([sys.executable, str(FUZZ / "run.py"), target, f"-runs={RUNS[target]}", "-seed=1",
                          "-timeout=20"], capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    done = [line for line in out.stderr.splitlines() if line.startswith("Done ")]
    print(target, done[-1] if done else out.stderr[-2000:])
    found = sorted((tmp_path / "crashes" / target).glob("*"))
    assert out.returncode == 0 and not found, (
        f"atheris found an input that breaks {target} (copy it into fuzz/crashes/{target}/ as a regression case "
        f"once fixed): {[p.read_bytes()[:2000] for p in found]}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")


# ----------------------------------------------------------------------------- multipart, differential
_names = st.sampled_from(["image", "images", "note", "x", "a b", "ümlaut", 'q"uote', "semi;colon", ""])
_filenames = st.one_of(st.none(), st.sampled_from(["a.png", "b c.jpg", 'we"ird.png', "back\\slash.png", "", "ü.gif"]))
_content = st.one_of(st.binary(max_size=300), st.sampled_from([b"\r\n", b"--" + BOUNDARY.encode(), b"\r\n--",
                                                               b"--" + BOUNDARY.encode() + b"-", b"\n--" + BOUNDARY.encode()]))


def _quoted(s: str) -> bytes:
    return b'"' + s.replace("\\", "\\\\").replace('"', '\\"').encode() + b'"'


@st.composite
def _bodies(draw):
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        name, filename = draw(_names), draw(_filenames)
        quoted = draw(st.booleans()) or not name.isalnum()
        disp = b"form-data; name=" + (_quoted(name) if quoted else name.encode())
        if filename is not None:
            disp += b"; filename=" + _quoted(filename)
        header = draw(st.sampled_from([b"Content-Disposition", b"content-disposition", b"CONTENT-DISPOSITION"]))
        lines = [header + b": " + disp]
        if draw(st.booleans()):
            lines.append(b"Content-Type: " + draw(st.sampled_from([b"image/png", b"text/plain; charset=utf-8"])))
        if draw(st.booleans()):
            lines.insert(0, b"Content-Transfer-Encoding: " + draw(st.sampled_from([b"binary", b"8bit", b"base64"])))
        parts.append(b"\r\n".join(lines) + b"\r\n\r\n" + draw(_content))
    dash = b"--" + BOUNDARY.encode()
    preamble = draw(st.sampled_from([b"", b"preamble\r\n", b"\r\n"]))
    body = preamble + b"".join(dash + b"\r\n" + p + b"\r\n" for p in parts) + dash + b"--"
    return body + draw(st.sampled_from([b"", b"\r\n", b"\r\nepilogue"]))


@settings(max_examples=400, deadline=None, derandomize=True,  # the same 400 bodies on every machine, as above
          suppress_health_check=[HealthCheck.too_slow])
@given(_bodies())
def test_our_multipart_reader_agrees_with_werkzeug_on_generated_bodies(body):
    TARGETS["multipart"](body)  # where ours reads the body, Werkzeug reads the same parts


def test_the_differential_check_is_not_vacuous():
    """The plain bodies curl, requests and browsers send are read by our reader itself (not left to Werkzeug),
    so the differential check above compares something."""
    for seed in sorted((FUZZ / "corpus" / "multipart").glob("*")):
        assert multipart.parse(seed.read_bytes(), f"multipart/form-data; boundary={BOUNDARY}"), seed.name
