"""What the numbers were measured on: the machine, the versions, the commit."""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from billwerk_dagster.orchestration.settings import PROJECT_ROOT

PACKAGES = ("dagster", "dagster-dlt", "dlt", "duckdb", "requests")


def describe_machine() -> dict[str, Any]:
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": {name: _version(name) for name in PACKAGES},
    }


def describe_commit() -> dict[str, Any]:
    """The short commit, `-dirty` when the working tree differs, and what differs."""
    head = (_git("rev-parse", "--short", "HEAD") or "unknown").strip()
    # --no-optional-locks: a benchmark must not even refresh the index.
    # Not bench/results: a run of several combinations writes there between them.
    status = _git("status", "--porcelain", "--", ".", ":(exclude)bench/results") or ""
    changed = [line for line in status.splitlines() if line]
    # Tells apart two dirty trees on the same commit: a hash of the package's diff.
    diff = _git("diff", "HEAD", "--", "billwerk_dagster") or ""
    return {
        "commit": f"{head}-dirty" if changed else head,
        "changed_files": changed,
        "package_diff_sha256": hashlib.sha256(diff.encode()).hexdigest()[:12] if diff else None,
    }


def _cpu_model() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout


class ForeignCpu:
    """CPU seconds the rest of the machine spends while a measurement runs.

    The machine's busy time minus this process's (with the children it has waited for, so
    a finished `dagster` command counts) and minus the sandbox's. Other work on the
    machine, such as a test suite, shows up here and skews both sides of the comparison.
    """

    def __init__(self, sandbox_pid: int | None = None) -> None:
        self.sandbox_pid = sandbox_pid
        self._started = time.perf_counter()
        self._busy, self._own = _busy_seconds(), self._own_seconds()

    def seconds(self) -> float:
        busy, own = _busy_seconds(), self._own_seconds()
        return max(0.0, (busy - self._busy) - (own - self._own))

    def cores(self) -> float:
        """Average number of cores the rest of the machine kept busy."""
        return self.seconds() / max(time.perf_counter() - self._started, 1e-9)

    def _own_seconds(self) -> float:
        times = psutil.Process().cpu_times()
        own = times.user + times.system + times.children_user + times.children_system
        if self.sandbox_pid is not None:
            with contextlib.suppress(psutil.Error):
                sandbox = psutil.Process(self.sandbox_pid).cpu_times()
                own += sandbox.user + sandbox.system
        return own


def wait_for_quiet(
    sandbox_pid: int | None, threshold_cores: float, max_wait_s: float
) -> tuple[float, float]:
    """Wait until the rest of the machine uses under `threshold_cores` for 2 s in a row.

    Gives up after `max_wait_s`. Returns the seconds waited and the last load seen.
    """
    started = time.perf_counter()
    while True:
        meter = ForeignCpu(sandbox_pid)
        time.sleep(2.0)
        load = meter.cores()
        waited = time.perf_counter() - started
        if load < threshold_cores or waited >= max_wait_s:
            return waited, load


def _busy_seconds() -> float:
    times = psutil.cpu_times()
    return float(times.user + times.nice + times.system + times.irq + times.softirq)
