"""inference/memory.py: the per-worker pixel budget, and freed memory given back to the system."""

import threading
import time

import pytest

from fmnist.inference.memory import BudgetExceeded, PixelBudget, trim


def test_big_pictures_share_the_budget_and_small_ones_never_wait():
    budget = PixelBudget(10_000_000, wait=5.0)
    order = []
    with budget.hold(8_000_000):
        with budget.hold(PixelBudget.FREE):  # a small picture takes no share
            pass

        def second():
            with budget.hold(6_000_000):
                order.append("second")

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.2)
        order.append("first done")  # the second waited: 8 + 6 M > 10 M
    t.join(5)
    assert order == ["first done", "second"] and budget.used == 0 and budget.peak == 8_000_000


def test_a_picture_over_the_whole_budget_holds_all_of_it_and_a_wait_is_bounded():
    budget = PixelBudget(10_000_000, wait=0.2)
    with budget.hold(25_000_000):
        assert budget.used == 10_000_000
        t0 = time.monotonic()
        with pytest.raises(BudgetExceeded, match="10,000,000 of 10,000,000"):
            with budget.hold(2_000_000):
                pass
        assert 0.15 < time.monotonic() - t0 < 2
    assert budget.used == 0


FREED = """
import os, sys
import numpy as np
from fmnist.inference.memory import give_back_freed_memory
from tests.httpprobe import rss_kb
if sys.argv[1] == "on":
    give_back_freed_memory()
x = np.ones(20 << 20, np.uint8); del x  # a 20 MB block freed: glibc's dynamic threshold rises to it
before = rss_kb(os.getpid())
pins = []
for k in range(10):  # arrays of growing size, each followed by a small long-lived object, as a decode leaves them
    a = np.ones((8 + k) << 20, np.uint8)
    pins.append(bytearray(4096))  # over pymalloc's 512 bytes: from malloc's heap, after the array
    del a
print((rss_kb(os.getpid()) - before) / 1024)
"""


def test_freed_big_blocks_go_back_to_the_system():
    """In a fresh process: once a 20 MB block is freed, glibc's dynamic mmap threshold rises to it, and the
    decode-sized arrays after it come from the heap, where a small object allocated after each keeps them
    (25 MB kept on this machine without the fix; none in a fresh Debian container, whose allocator state
    differs). With the threshold fixed at 1 MiB they are mapped on their own and given back when freed."""
    import os
    import subprocess
    import sys

    from fmnist.inference import memory
    from tests.conftest import REPO

    if memory._glibc() is None:
        pytest.skip("not glibc: there is no mmap threshold to set")
    kept: dict = {}
    for mode in ("off", "on"):
        out = subprocess.run([sys.executable, "-c", FREED, mode], capture_output=True, text=True, cwd=REPO, timeout=120,
                             env={**os.environ, "PYTHONPATH": str(REPO)})
        assert out.returncode == 0, out.stderr[-2000:]
        kept[mode] = float(out.stdout)
    print(f"MB kept after freeing: {kept}")
    # Without the fix, how much stays depends on the allocator's state (25 MB in this machine's Python, 0 in a
    # fresh Debian container's): only the fixed case is asserted
    assert kept["on"] < 4, kept
    trim()  # and trimming costs nothing where there is nothing to give back
