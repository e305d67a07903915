"""API keys with scopes, for both request paths (the fast path and Flask); no Flask here.

A key is `fmk_<id>_<secret>` (id: 8 hex digits, secret: 32 URL-safe characters, 190 bits). The key file
(`api_keys` setting, FMNIST_API_KEYS; a mounted Kubernetes Secret works as it is) keeps, per key, its id,
name, scopes and the sha256 of its secret - never the secret. A request sends the key as
`Authorization: Bearer <key>` (what Open Inference Protocol clients send with a header option) or
`X-API-Key: <key>`; the id selects the record and the secret's hash is compared in constant time.

Scopes: `predict` (/predict, /explain, /v2 inference and metadata, /model, /openapi.json), `feedback`
(/feedback), `monitor` (/metrics, /monitoring*). The probes (/health, /ready, /v2/health/*) stay open,
and so does /dashboard: its page is static (no data); it asks the user for a key once, keeps it for the
tab, and sends it with every request it makes. Any other path needs a `predict` key too, so nothing is learnt without one.

The file is read again when it changes (checked at most once a second): keys are added, rotated and
revoked without a restart. A file that is missing or unreadable at start refuses every request that needs
a key (401, saying why) until it appears; a file that turns bad later keeps the last good keys (and logs
why). Nothing ever opens the server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from fmnist.errors import InvalidValue
from fmnist.fileio import atomic_write
from fmnist.serving.http import exchange

log = logging.getLogger("fmnist.serving")
SCOPES = ("predict", "feedback", "monitor")
OPEN_PATHS = frozenset({"/health", "/ready", "/v2/health/live", "/v2/health/ready", "/",
                        "/dashboard"})  # the dashboard's page holds no data: it asks for a key, then fetches with it;
# "/" only names the routes (and sends a browser to the dashboard)
_KEY = re.compile(r"^fmk_([0-9a-f]{8})_([A-Za-z0-9_-]{32})$")
_DUMMY = hashlib.sha256(b"no such key").hexdigest()
RELOAD_EVERY = 1.0  # seconds between looks at the key file


def scope_for(path: str) -> "str | None":
    """The scope a path needs; None for the open probes."""
    if path in OPEN_PATHS:
        return None
    if path == "/feedback":
        return "feedback"
    if path == "/metrics" or path == "/monitoring" or path.startswith("/monitoring/"):
        return "monitor"
    return "predict"


@dataclass(frozen=True)
class Key:
    id: str
    name: str
    sha256: str
    scopes: tuple
    created: float
    revoked: bool = False
    rate: float = 0.0  # requests per second this key may make of one server (0: no limit)
    burst: int = 0  # requests it may make at once above the rate
    image_rate: float = 0.0  # images per second (a request may hold up to max_images; 0: no limit)
    image_burst: int = 0


class Buckets:
    """Token buckets per key, in one worker process. A key's rate is shared out over the server's workers
    (each allows rate / workers, burst / workers, at least 1): a server never answers a key more than its
    rate; a client whose connections all reach one worker gets that worker's share. Replicas do not share
    buckets: N replicas allow N times the rate."""

    def __init__(self, workers: int):
        self.workers = max(1, workers)
        self._state: dict = {}  # key id -> (tokens, last time)
        self._lock = threading.Lock()

    def take(self, key: Key) -> float:
        """0 when the request may go; else the seconds until it may (Retry-After)."""
        return self._take(key.id, key.rate, key.burst, 1)

    def take_images(self, key: Key, n: int) -> float:
        """0 when a request of n images may go; else the seconds until it may; inf when n is more than the
        key's bucket ever holds on one worker (the client must split the request)."""
        return self._take(key.id + ":images", key.image_rate, key.image_burst, n)

    def capacity(self, per_second: float, burst: int) -> float:
        return max(1.0, (burst or per_second) / self.workers)

    def _take(self, slot: str, per_second: float, burst: int, n: int) -> float:
        if per_second <= 0:
            return 0.0
        rate, cap = per_second / self.workers, self.capacity(per_second, burst)
        if n > cap:
            return math.inf
        now = time.monotonic()
        with self._lock:
            tokens, last = self._state.get(slot, (cap, now))
            tokens = min(cap, tokens + (now - last) * rate)
            if tokens >= n:
                self._state[slot] = (tokens - n, now)
                return 0.0
            self._state[slot] = (tokens, now)
            return (n - tokens) / rate


@dataclass(frozen=True)
class Denied:
    status: int
    code: str  # missing | malformed | unknown | revoked | scope | unavailable | rate (fmnist_auth_failures_total)
    message: str

    retry_after: float = 0.0

    @property
    def error_code(self) -> str:
        """The API error body's code for this refusal."""
        return {401: "unauthorized", 403: "forbidden", 429: "rate_limited"}[self.status]

    @property
    def headers(self) -> dict:
        if self.status == 429:
            return {"Retry-After": str(max(1, int(self.retry_after + 0.999)))}
        return {"WWW-Authenticate": 'Bearer realm="fmnist"'} if self.status == 401 else {}


def new_key() -> "tuple[str, str, str]":
    """-> (the key to hand out, its id, the sha256 of its secret to store)."""
    kid, secret = secrets.token_hex(4), secrets.token_urlsafe(24)  # 24 bytes: 32 characters
    return f"fmk_{kid}_{secret}", kid, hashlib.sha256(secret.encode()).hexdigest()


def parse_file(text: str, path: str) -> dict:
    """The key file's text -> {id: Key}; InvalidValue saying what is wrong."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InvalidValue(f"{path}: not a JSON key file ({e}); make one with `fmnist keys create`") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise InvalidValue(f'{path}: expected {{"keys": [...]}} (made by `fmnist keys create`)')
    keys = {}
    for n, k in enumerate(data["keys"]):
        try:
            scopes = tuple(k["scopes"])
            if not (re.fullmatch(r"[0-9a-f]{8}", k["id"]) and re.fullmatch(r"[0-9a-f]{64}", k["sha256"])
                    and scopes and set(scopes) <= set(SCOPES)):
                raise ValueError
            rate, burst = float(k.get("rate", 0)), int(k.get("burst", 0))
            image_rate, image_burst = float(k.get("image_rate", 0)), int(k.get("image_burst", 0))
            if min(rate, burst, image_rate, image_burst) < 0:
                raise ValueError
            keys[k["id"]] = Key(k["id"], str(k.get("name", "")), k["sha256"], scopes, float(k.get("created", 0)),
                                bool(k.get("revoked", False)), rate, burst, image_rate, image_burst)
        except (KeyError, TypeError, ValueError):
            raise InvalidValue(f"{path}: key #{n} is malformed: it needs an 8-hex-digit id, a 64-hex-digit sha256 "
                               f"and scopes among {', '.join(SCOPES)}") from None
    return keys


class KeyStore:
    """The keys of one key file, read again when it changes."""

    def __init__(self, path: "str | Path", workers: int = 1):
        self.path = Path(path)
        self.buckets = Buckets(workers)
        self._keys: dict = {}
        self._stamp = None
        self._checked = 0.0
        self._lock = threading.Lock()
        self.problem: "str | None" = None
        if self.path.exists():
            self._keys = parse_file(self.path.read_text(), str(self.path))  # bad at start: refuse to start
            self._stamp = self._stat()
        else:
            self.problem = f"no API key file at {self.path} yet"
            log.error("api keys: %s; every request that needs a key is refused until it appears", self.problem)

    def _stat(self):
        st = self.path.stat()
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < RELOAD_EVERY:
            return
        with self._lock:
            if now - self._checked < RELOAD_EVERY:
                return
            self._checked = now
            try:
                stamp = self._stat()
                if stamp == self._stamp:
                    return
                keys = parse_file(self.path.read_text(), str(self.path))
            except FileNotFoundError:
                if self._stamp is None:
                    return  # still not there
                self.problem = f"the API key file {self.path} disappeared; keeping the keys read before"
                log.error("api keys: %s", self.problem)
                return
            except (OSError, InvalidValue) as e:
                self.problem = f"{e}; keeping the keys read before"
                log.error("api keys: %s", self.problem)
                return
            self._keys, self._stamp, self.problem = keys, stamp, None
            log.info("api keys: %d keys from %s", len(keys), self.path)

    def check(self, header_authorization: str, header_api_key: str, scope: str) -> "Key | Denied":
        """The key a request presents (Authorization: Bearer, or X-API-Key), if it may use `scope`."""
        self._refresh()
        raw = header_api_key.strip()
        if header_authorization:
            kind, _, value = header_authorization.strip().partition(" ")
            if kind.lower() != "bearer" or not value.strip():
                return Denied(401, "malformed", "Authorization must be 'Bearer <API key>'")
            raw = value.strip()
        if not self._keys and self.problem:  # no key file yet (a Secret not created): no key can be right
            return Denied(401, "unavailable", f"this server needs an API key and has none loaded ({self.problem})")
        if not raw:
            return Denied(401, "missing", "this route needs an API key: send 'Authorization: Bearer <key>' "
                                          "or 'X-API-Key: <key>'")
        m = _KEY.match(raw)
        if m is None:
            return Denied(401, "malformed", "not an fmnist API key (expected fmk_<8 hex digits>_<32 characters>)")
        kid, secret = m.groups()
        key = self._keys.get(kid)
        digest = hashlib.sha256(secret.encode()).hexdigest()
        if not hmac.compare_digest(digest, key.sha256 if key else _DUMMY) or key is None:
            return Denied(401, "unknown", "unknown API key")
        if key.revoked:
            return Denied(401, "revoked", f"API key {kid} has been revoked")
        if scope not in key.scopes:
            return Denied(403, "scope", f"API key {kid} may not use this route: it needs the '{scope}' scope, the key "
                                        f"has {', '.join(key.scopes)}")
        return key

    def check_environ(self, environ: dict) -> "Key | Denied | None":
        """None when the path is open; else check(), then the key's rate. The answer is kept in the request's
        Exchange: a request the fast path passes on to Flask is not checked (or counted against its rate) twice."""
        ex = exchange.of(environ)
        if ex.checked:
            return ex.key
        scope = scope_for(environ.get("PATH_INFO", ""))
        if scope is None:
            return None
        result = self.check(environ.get("HTTP_AUTHORIZATION", ""), environ.get("HTTP_X_API_KEY", ""), scope)
        if isinstance(result, Key):
            wait = self.buckets.take(result)
            if wait > 0:
                result = Denied(429, "rate", f"API key {result.id} is over its rate of {result.rate:g} requests a "
                                             f"second on this server; retry in {wait:.2f} s", wait)
        ex.key, ex.checked = result, True
        return result

    def charge_images(self, environ: dict, n: int) -> "Denied | None":
        """The request's key pays for its n images (once per request, whichever path asks); a Denied (429)
        when the key is over its images-per-second rate."""
        ex = exchange.of(environ)
        key = ex.key
        if not isinstance(key, Key) or key.image_rate <= 0 or ex.images_paid:
            return None
        ex.images_paid = True
        wait = self.buckets.take_images(key, n)
        if wait <= 0:
            return None
        if math.isinf(wait):
            most = int(self.buckets.capacity(key.image_rate, key.image_burst))
            return Denied(429, "rate", f"this request holds {n} images; API key {key.id} may send at most {most} at "
                                       "once to one worker: send fewer per request", 1.0)
        return Denied(429, "rate", f"API key {key.id} is over its rate of {key.image_rate:g} images a second on "
                                   f"this server ({n} in this request); retry in {wait:.2f} s", wait)


# --------------------------------------------------------------------------- the key file (fmnist keys)

def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {"keys": []}


def _write(path: Path, data: dict) -> None:
    atomic_write(path, json.dumps(data, indent=1) + "\n", mode=0o600)  # hashes only, but nobody else's business


def create(path: "str | Path", name: str, scopes: "list[str]", rate: float = 0.0, burst: int = 0,
           image_rate: float = 0.0, image_burst: int = 0) -> str:
    """Add a key to the file (made if absent); -> the key, shown once. rate: requests per second of one
    server (0: no limit), burst: how many at once above it (default: one second's worth); image_rate and
    image_burst: the same in images (a request holds up to max_images)."""
    bad = set(scopes) - set(SCOPES)
    if not scopes or bad:
        raise InvalidValue(f"scopes must be among {', '.join(SCOPES)}, got {', '.join(scopes) or 'none'}")
    path = Path(path)
    data = _read(path)
    parse_file(json.dumps(data), str(path))
    key, kid, digest = new_key()
    if min(rate, burst, image_rate, image_burst) < 0:
        raise InvalidValue("rates and bursts must be >= 0 (0: no limit)")
    data["keys"].append({"id": kid, "name": name, "sha256": digest, "scopes": sorted(set(scopes)),
                         "created": round(time.time(), 3), "revoked": False, "rate": rate, "burst": burst,
                         "image_rate": image_rate, "image_burst": image_burst})
    _write(path, data)
    return key


def revoke(path: "str | Path", kid: str) -> None:
    path = Path(path)
    data = _read(path)
    for k in data["keys"]:
        if k["id"] == kid:
            k["revoked"] = True
            _write(path, data)
            return
    raise InvalidValue(f"{path}: no key with id {kid!r}")


def listing(path: "str | Path") -> list:
    path = Path(path)
    return list(parse_file(json.dumps(_read(path)), str(path)).values())
