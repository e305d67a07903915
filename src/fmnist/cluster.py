"""`fmnist cluster`: N `fmnist serve` replicas on one machine behind a real nginx, kept alive.

`up` writes an nginx config (least-connections upstream with passive health checks, retries on a
failed upstream, request-size limit, timeouts, upstream keep-alive), starts the replicas and
nginx, then supervises them: a replica or nginx that dies is started again. `down` stops it all
gracefully; `status` shows each replica's readiness and model version.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from fmnist.config import cpu_count
from fmnist.errors import FmnistError
from fmnist.fileio import atomic_write

NGINX_CANDIDATES = ("nginx", "/usr/sbin/nginx")

NGINX_CONF = """# written by `fmnist cluster up`; do not edit (it is rewritten at every start)
worker_processes 1;
pid {state}/nginx.pid;
error_log {state}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {state}/client_body;
    proxy_temp_path {state}/proxy;
    fastcgi_temp_path {state}/fastcgi;
    uwsgi_temp_path {state}/uwsgi;
    scgi_temp_path {state}/scgi;
    client_max_body_size {max_body};
    # requests in flight through this nginx at most (every replica's limit together): beyond, 503 at once, in
    # C, before a replica is chosen, and not written to the error log (a storm would write a line per refusal:
    # measured, ~1.4 MB/s and a tenth of the goodput); max_conns below still bounds each replica
    limit_conn_zone $server_port zone=fmnist_inflight:1m;
    limit_conn_status 503;
    limit_conn_log_level info;
    # a ceiling against one abusive address, far above a real client's needs (per-key rates are the
    # replicas'): answered 429 + Retry-After in the API's error shape
    limit_req_zone $binary_remote_addr zone=fmnist_reqs:10m rate={ip_rate}r/s;
    limit_req_status 429;

    upstream fmnist {{
        least_conn;
{servers}
        keepalive 64;
        keepalive_timeout 4s;  # under the replicas' 5 s: nginx drops an idle connection first
    }}

    server {{
        listen {host}:{port} backlog=4096;
        location / {{
            proxy_pass http://fmnist;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            limit_conn fmnist_inflight {inflight_total};
            limit_req zone=fmnist_reqs burst={ip_burst} nodelay;
            # retried on another replica: only a replica that refuses, resets or never answers (it died or
            # is restarting). An answer is final, 503 and 429 included: a replica that sheds load or a key
            # over its rate must not send the same work to the next replica (that multiplies overload).
            # POST /predict is safe to resend after a reset (it changes nothing but the prediction log).
            proxy_next_upstream error timeout non_idempotent;
            proxy_next_upstream_tries 3;
            proxy_next_upstream_timeout 10s;
            proxy_connect_timeout 1s;
            proxy_send_timeout 30s;
            proxy_read_timeout 30s;
        }}
        location = /nginx-health {{ return 200 "ok\\n"; }}
        # every replica at its in-flight limit (limit_conn above, or one replica's max_conns): answered here at
        # once, in C, instead of queued at a replica that would only answer it late (a 502 is also what nginx
        # says when no replica is up). A replica's own 503 passes through unchanged (no proxy_intercept_errors).
        error_page 502 503 = @busy;
        location @busy {{
            default_type application/json;
            add_header Retry-After 1 always;
            return 503 '{{"error": {{"code": "server_busy", "message": "every replica is at its limit of requests in \
flight (or none is up); retry after Retry-After seconds"}}, "request_id": null}}';
        }}
        error_page 429 = @limited;
        location @limited {{
            default_type application/json;
            add_header Retry-After 1 always;
            return 429 '{{"error": {{"code": "rate_limited", "message": "too many requests or connections from this address \
(a limit of the load balancer); retry after Retry-After seconds"}}, "request_id": null}}';
        }}
    }}
}}
"""


class ClusterError(FmnistError):
    pass


def find_nginx() -> str:
    for c in NGINX_CANDIDATES:
        path = shutil.which(c)
        if path:
            return path
    raise ClusterError("nginx not found: install it (Debian/Ubuntu: apt-get install nginx)")


IP_LIMITS = {"ip_rate": 20000, "ip_burst": 40000}  # per client address, at the load balancer
INFLIGHT_PER_WORKER = 64  # requests nginx keeps in flight at a replica per worker (a loop worker's full batch)


def nginx_config(state: Path, host: str, port: int, replica_ports: list[int], max_body: str = "10m",
                 inflight: int = INFLIGHT_PER_WORKER, **limits) -> str:
    """inflight: requests in flight at one replica at most (nginx's max_conns; through nginx, inflight x replicas);
    beyond, nginx answers 503 itself."""
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s max_conns={inflight};"
                         for p in replica_ports)
    return NGINX_CONF.format(state=state, host=host, port=port, servers=servers, max_body=max_body,
                             inflight_total=inflight * len(replica_ports), **{**IP_LIMITS, **limits})


def _ready(url: str, timeout: float = 5.0) -> "dict | None":
    try:
        with urllib.request.urlopen(url + "/ready", timeout=timeout) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def _wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterError(f"replica at {url} exited with status {proc.returncode} (see its log)")
        if _ready(url):
            return
        time.sleep(0.1)
    raise ClusterError(f"replica at {url} not ready after {timeout:.0f} s")


class Cluster:
    def __init__(self, state_dir: Path, replicas: int, port: int = 5000, host: str = "127.0.0.1",
                 base_port: "int | None" = None, workers: "int | None" = None, serve_args: "list[str] | None" = None):
        if replicas < 1:
            raise ClusterError("--replicas must be at least 1")
        self.state = Path(state_dir).resolve()
        self.replicas = replicas
        self.port, self.host = port, host
        self.base_port = base_port or port + 1
        cpus = cpu_count()
        self.workers = workers or max(1, cpus // replicas)  # the replicas share the machine's cores
        self.serve_args = serve_args or []
        self.procs: dict[int, subprocess.Popen] = {}
        self.nginx: "subprocess.Popen | None" = None
        self.restarts = 0
        self._stopping = False

    @property
    def replica_ports(self) -> list[int]:
        return [self.base_port + i for i in range(self.replicas)]

    def _start_replica(self, port: int) -> subprocess.Popen:
        log = open(self.state / f"replica-{port}.log", "ab")
        cmd = [sys.executable, "-m", "fmnist.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
               "--workers", str(self.workers), *self.serve_args]
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(self.state / f"metrics-{port}")}
        return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def _start_nginx(self) -> subprocess.Popen:
        conf = self.state / "nginx.conf"
        atomic_write(conf, nginx_config(self.state, self.host, self.port, self.replica_ports,
                                     inflight=INFLIGHT_PER_WORKER * self.workers))
        nginx = find_nginx()
        check = subprocess.run([nginx, "-t", "-q", "-c", str(conf), "-p", str(self.state)], capture_output=True,
                               text=True)
        if check.returncode != 0:
            raise ClusterError(f"nginx rejected {conf}: {check.stderr.strip()}")
        return subprocess.Popen([nginx, "-c", str(conf), "-p", str(self.state), "-g", "daemon off;"],
                                stdout=subprocess.DEVNULL, stderr=open(self.state / "nginx-stderr.log", "ab"))

    def _write_state(self) -> None:
        data = {"supervisor_pid": os.getpid(), "port": self.port, "host": self.host,
                "nginx_pid": self.nginx.pid if self.nginx else None, "restarts": self.restarts,
                "replicas": [{"port": p, "pid": proc.pid} for p, proc in sorted(self.procs.items())]}
        atomic_write(self.state / "state.json", json.dumps(data, indent=2), durable=False)

    def start(self) -> None:
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        find_nginx()
        for p in self.replica_ports:
            self.procs[p] = self._start_replica(p)
        for p, proc in self.procs.items():
            _wait_ready(f"http://127.0.0.1:{p}", proc)
        self.nginx = self._start_nginx()
        deadline = time.monotonic() + 10
        while not _ready(f"http://{self.host}:{self.port}") and time.monotonic() < deadline:
            time.sleep(0.1)
        self._write_state()

    def supervise(self, interval: float = 0.5) -> None:
        """Restart what dies until SIGTERM/SIGINT, then stop everything gracefully."""
        def stop(signum, frame):
            self._stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not self._stopping:
            time.sleep(interval)
            for port, proc in list(self.procs.items()):
                if proc.poll() is not None and not self._stopping:
                    print(f"fmnist cluster: replica :{port} exited ({proc.returncode}); restarting", flush=True)
                    self._reap_group(proc)
                    self.procs[port] = self._start_replica(port)
                    self.restarts += 1
                    self._write_state()
            if self.nginx is not None and self.nginx.poll() is not None and not self._stopping:
                print("fmnist cluster: nginx exited; restarting", flush=True)
                self.nginx = self._start_nginx()
                self._write_state()
        self.stop()

    @staticmethod
    def _reap_group(proc: subprocess.Popen) -> None:
        """A replica whose master died may leave workers behind: end its whole process group."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self) -> None:
        if self.nginx is not None and self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)  # graceful: finish in-flight requests
            try:
                self.nginx.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=25)
            except subprocess.TimeoutExpired:
                self._reap_group(proc)
        (self.state / "state.json").unlink(missing_ok=True)


def read_state(state_dir: Path) -> dict:
    path = Path(state_dir) / "state.json"
    if not path.is_file():
        raise ClusterError(f"no cluster is running from {state_dir} (no state.json); start one with `fmnist cluster up`")
    return json.loads(path.read_text())


def status(state_dir: Path) -> dict:
    st = read_state(state_dir)
    out = {"port": st["port"], "restarts": st["restarts"], "replicas": []}
    for r in st["replicas"]:
        ready = _ready(f"http://127.0.0.1:{r['port']}")
        out["replicas"].append({**r, "ready": bool(ready),
                                "model": f"{ready['model']['name']}:{ready['model']['version']}" if ready else None})
    out["load_balancer_ready"] = bool(_ready(f"http://{st['host']}:{st['port']}"))
    return out


def down(state_dir: Path, timeout: float = 60.0) -> None:
    st = read_state(state_dir)
    try:
        os.kill(st["supervisor_pid"], signal.SIGTERM)
    except ProcessLookupError:
        raise ClusterError(f"the supervisor (pid {st['supervisor_pid']}) is gone; remove {state_dir} by hand") from None
    deadline = time.monotonic() + timeout
    while (Path(state_dir) / "state.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    if (Path(state_dir) / "state.json").exists():
        raise ClusterError(f"cluster did not stop within {timeout:.0f} s")


def start_detached(state_dir: Path, argv: list, timeout: float = 180.0) -> int:
    """Run the supervisor (`argv`: the same `cluster up` without --detach) in its own session, logging
    to supervisor.log; return its pid once the load balancer and every replica answer /ready."""
    state_dir = Path(state_dir)
    with open(state_dir / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                env=os.environ.copy())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ClusterError(f"cluster failed to start; see {state_dir / 'supervisor.log'}")
        if (state_dir / "state.json").exists():
            st = status(state_dir)
            if st["load_balancer_ready"] and all(r["ready"] for r in st["replicas"]):
                return proc.pid
        time.sleep(0.2)
    raise ClusterError(f"cluster not up after {timeout:.0f} s; see {state_dir / 'supervisor.log'}")
