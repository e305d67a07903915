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


# the answers that were not 200, and the socket errors, summed over wrk's threads (NON200 n, ERRORS n)
COUNT_NON200 = r"""
function init(args) bad = 0 end
function response(status, headers, body) if status ~= 200 then bad = bad + 1 end end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("bad") end
  io.write("NON200 " .. total .. "\n")
  io.write("ERRORS " .. (summary.errors.connect + summary.errors.read + summary.errors.write
                        + summary.errors.timeout) .. "\n")
end
"""
