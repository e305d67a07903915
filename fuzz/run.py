"""Coverage-guided fuzzing of one target of fuzz/targets.py with atheris (libFuzzer for Python).

    python fuzz/run.py TARGET [libFuzzer options...]     e.g. python fuzz/run.py image -max_total_time=60

Starts from the kept seed corpus (fuzz/corpus/TARGET) and the crashes ever found (fuzz/crashes/TARGET), adds
what it finds new coverage with to a scratch corpus (FUZZ_WORK, default .fuzz/TARGET), and writes a crash's
input to fuzz/crashes/TARGET/ (FUZZ_CRASHES: another folder) so that it is kept as a regression case:
tests/integration/test_fuzz.py replays every file there, and the seeds, through the target. `make fuzz` runs
every target for longer;
`make test` runs each for a few seconds (tests/integration/test_fuzz.py).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import atheris

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

# what coverage guides each target through, besides fmnist: the Python side of the parsers it calls
INSTRUMENT = {"multipart": ["werkzeug.formparser", "werkzeug.sansio.multipart", "werkzeug.http"],
              "image": ["PIL"], "json": [], "v2": []}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in INSTRUMENT:
        raise SystemExit(f"usage: python fuzz/run.py {{{','.join(INSTRUMENT)}}} [libFuzzer options]")
    name, options = sys.argv[1], sys.argv[2:]
    with atheris.instrument_imports(include=["fmnist", *INSTRUMENT[name]]):
        from fuzz.targets import TARGETS

        if name == "image":  # Pillow's format plugins load on first use: load them here, instrumented
            from PIL import Image

            Image.init()

    work = Path(os.environ.get("FUZZ_WORK", HERE.parent / ".fuzz" / name))
    crashes = Path(os.environ.get("FUZZ_CRASHES", HERE / "crashes")) / name
    work.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    kept = [HERE / "corpus" / name, HERE / "crashes" / name]  # a target with no crash yet has no folder (git)
    corpora = [str(work), *(str(d) for d in kept if d.is_dir())]
    args = [sys.argv[0], *options, f"-artifact_prefix={crashes}/", "-max_len=65536", "-rss_limit_mb=3072", *corpora]
    warnings.simplefilter("ignore")  # Pillow warns on every odd tag it meets; findings are exceptions
    target = TARGETS[name]
    atheris.Setup(args, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
