"""CPU and memory of the server's processes (Gunicorn master + workers) and, with NVML, the GPUs."""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _master_pid() -> int:
    """The Gunicorn master when we are one of its workers, else this process."""
    ppid = os.getppid()
    try:
        if b"gunicorn" in Path(f"/proc/{ppid}/cmdline").read_bytes():
            return ppid
    except OSError:
        pass
    return os.getpid()


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            out += [int(p) for p in task.read_text().split()]
        except OSError:
            continue
    return out


def process_stats(pid: int) -> "tuple[float, int] | None":
    """(CPU seconds user+system, resident bytes) from /proc, or None if the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        statm = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime
    return cpu, int(statm[1]) * _PAGE


def server_processes() -> list[tuple[int, str]]:
    master = _master_pid()
    if master == os.getpid():
        return [(master, "server")]
    return [(master, "master")] + [(p, "worker") for p in _children(master)]


class SystemCollector:
    """Read at scrape time, so every worker's /metrics shows the whole server."""

    def collect(self):
        cpu = CounterMetricFamily("fmnist_process_cpu_seconds", "CPU time of a server process",
                                  labels=["pid", "role"])
        rss = GaugeMetricFamily("fmnist_process_resident_memory_bytes", "Resident memory of a server process",
                                labels=["pid", "role"])
        total_cpu, total_rss = 0.0, 0
        for pid, role in server_processes():
            stats = process_stats(pid)
            if stats is None:
                continue
            cpu.add_metric([str(pid), role], stats[0])
            rss.add_metric([str(pid), role], stats[1])
            total_cpu += stats[0]
            total_rss += stats[1]
        yield cpu
        yield rss
        yield CounterMetricFamily("fmnist_server_cpu_seconds", "CPU time of all server processes", value=total_cpu)
        yield GaugeMetricFamily("fmnist_server_resident_memory_bytes", "Resident memory of all server processes",
                                value=total_rss)
        yield from gpu_metrics()


def gpu_metrics():
    """GPU utilisation and memory through NVML; nothing at all (not zeros) without a GPU."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no pynvml, no driver, no GPU: the series are absent
        return
    try:
        n = pynvml.nvmlDeviceGetCount()
        if n == 0:
            return
        util = GaugeMetricFamily("fmnist_gpu_utilization_ratio", "GPU busy fraction (NVML)", labels=["gpu"])
        used = GaugeMetricFamily("fmnist_gpu_memory_used_bytes", "GPU memory in use (NVML)", labels=["gpu"])
        total = GaugeMetricFamily("fmnist_gpu_memory_total_bytes", "GPU memory (NVML)", labels=["gpu"])
        for i in range(n):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            rates = pynvml.nvmlDeviceGetUtilizationRates(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            util.add_metric([str(i)], rates.gpu / 100.0)
            used.add_metric([str(i)], float(mem.used))
            total.add_metric([str(i)], float(mem.total))
        yield util
        yield used
        yield total
    finally:
        pynvml.nvmlShutdown()
