"""wrk Lua scripts for the load tests: POST one JSON `pixels` image, count answers per wrk thread."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

PRELUDE = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"pixels": PIXELS}'
local threads = {}
function setup(thread) table.insert(threads, thread) end
"""


def pixels_script(path: Path, pixels: np.ndarray, counting_lua: str) -> Path:
    """The shared prelude, the image, then the test's own init/response/done functions."""
    path.write_text(PRELUDE.replace("PIXELS", json.dumps(np.asarray(pixels).astype(int).tolist())) + counting_lua)
    return path
