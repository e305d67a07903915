"""An injected leak for bench/soak.py --inject-leak (loaded through PYTHONPATH in the soak's server only):
every request of the batched fast path keeps FMNIST_SOAK_LEAK_BYTES, as a cache that is never emptied
would. It shows the soak catches a leak; nothing in fmnist changes."""

import os

_BYTES = int(os.environ.get("FMNIST_SOAK_LEAK_BYTES") or 0)
if _BYTES:
    from fmnist.serving import fastpath

    _kept: list = []
    _original = fastpath.PredictFastPath.wsgi_batch

    def _leaky(self, environs, start_responses):
        _kept.extend(b"x" * _BYTES for _ in environs)
        return _original(self, environs, start_responses)

    fastpath.PredictFastPath.wsgi_batch = _leaky
