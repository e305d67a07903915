"""serving/memory.py: the per-worker pixel budget, and freed memory given back to the system."""

import threading
import time

import numpy as np
import pytest

from fmnist.serving.memory import BudgetExceeded, PixelBudget, give_back_freed_memory, trim


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


def test_freed_big_blocks_go_back_to_the_system():
    """With the fixed mmap threshold, blocks freed after a big array go back at once (without it glibc raises
    its threshold to the array's size and keeps the blocks after it in its heap: 31 MB here)."""
    from tests.httpprobe import rss_kb

    if not give_back_freed_memory():
        pytest.skip("not glibc: nothing to set")
    import os

    before = rss_kb(os.getpid())
    for _ in range(3):
        a = np.ones((50_000_000,), np.float32)  # 200 MB, touched
        del a
        b = [np.ones(300_000, np.uint8) for _ in range(200)]  # 60 MB of blocks under the threshold
        del b
    assert rss_kb(os.getpid()) - before < 10_000, (before, rss_kb(os.getpid()))
    trim()  # and trimming what is left costs nothing
