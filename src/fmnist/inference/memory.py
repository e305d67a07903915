"""A worker's memory, bounded by design: how many pixels it decodes at once, and freed memory given back.

Decoding a big picture needs its whole pixel array (a 25-megapixel RGBA PNG: 100 MB, and its conversion
copies); a burst of them on every thread at once multiplies that. Two rules keep a worker's resident
memory within a bound of its idle size:

- `PixelBudget`: at most `limit` pixels being decoded at once per worker, whatever the route (multipart,
  JSON base64, /explain) or thread; a picture waits for its share (at most `wait` seconds, then 503 with
  Retry-After). Small pictures (under `PixelBudget.FREE`) never wait: their arrays are a few kB.
- `give_back_freed_memory` (once per process) and `trim`: glibc's malloc keeps what it frees in its arenas,
  and its mmap threshold grows with every large block freed, so after one burst the next big arrays come
  from (and stay in) the heap. A fixed threshold keeps every block over 1 MiB in its own mapping, returned
  to the system when freed; `trim` (malloc_trim) after a big picture returns what the heap holds free.
  Measured: 12 pictures of 25 MP decoded 4 at a time, 156 MB kept without, 40 MB with (idle: 26 MB).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import threading
import time

from fmnist.errors import Refused

log = logging.getLogger("fmnist.inference")
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD = 1 << 20
_libc = None


def _glibc():
    global _libc
    if _libc is None:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _libc = lib if hasattr(lib, "mallopt") and hasattr(lib, "malloc_trim") else False
        except OSError:
            _libc = False
    return _libc or None


def give_back_freed_memory() -> bool:
    """Blocks over 1 MiB mapped on their own (and unmapped when freed), in this process, from now on.
    False where the C library is not glibc (musl returns large blocks by itself)."""
    lib = _glibc()
    return bool(lib and lib.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def trim() -> None:
    """Return the free memory at the top of glibc's heaps to the system (~0.2 ms)."""
    lib = _glibc()
    if lib:
        lib.malloc_trim(0)


class BudgetExceeded(Refused):
    """No share of the pixel budget within the wait: the worker is decoding other big pictures (503)."""

    def __init__(self, why: str):
        super().__init__(503, "server_busy", f"this worker is decoding as many large pictures as it may hold at once "
                                             f"({why}); retry shortly", {"Retry-After": "1"})


class PixelBudget:
    FREE = 1 << 20  # pictures decoding to at most this many pixels take no share (1 MP: a few MB at most)

    def __init__(self, limit: int, wait: float):
        self.limit, self.wait = limit, wait
        self.used = 0
        self.peak = 0  # the most pixels held at once (for tests and the soak benchmark)
        self._cond = threading.Condition()

    def hold(self, pixels: int) -> "_Share":
        """A context holding `pixels` of the budget (a picture over the whole budget holds all of it).
        BudgetExceeded when it cannot be had within `wait` seconds."""
        return _Share(self, 0 if pixels <= self.FREE else min(pixels, self.limit))

    def _acquire(self, n: int) -> None:
        deadline = time.monotonic() + self.wait
        with self._cond:
            while self.used + n > self.limit:
                left = deadline - time.monotonic()
                if left <= 0 or not self._cond.wait(left):
                    if self.used + n > self.limit:
                        raise BudgetExceeded(f"{self.used:,} of {self.limit:,} pixels are being decoded by this worker")
            self.used += n
            self.peak = max(self.peak, self.used)

    def _release(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._cond.notify_all()


class _Share:
    __slots__ = ("budget", "n")

    def __init__(self, budget: PixelBudget, n: int):
        self.budget, self.n = budget, n

    def __enter__(self):
        if self.n:
            self.budget._acquire(self.n)
        return self

    def __exit__(self, *exc):
        if self.n:
            self.budget._release(self.n)
            trim()  # the picture's arrays are freed by now (the caller keeps only its 28x28)
        return False
