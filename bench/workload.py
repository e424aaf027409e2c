"""One benchmark combination and the local sandbox that serves it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from billwerk_dagster.billwerk.client import DEFAULT_MAX_REQUESTS_PER_SECOND
from billwerk_dagster.billwerk.window import Window
from billwerk_dagster.sandbox.control import SandboxProcess, sandbox_server_process

SANDBOX_START_TIMEOUT_S = 300
# At 0 ms the benchmark measures the pipeline's own cost per record, against a bound that
# fetches unthrottled; the project's default request rate would measure the rate instead.
UNTHROTTLED_REQUESTS_PER_SECOND = 1000.0


@dataclass(frozen=True)
class Workload:
    """Invoices and orders over `days` days from `start`, served with `latency_ms` per request."""

    invoices: int
    orders: int
    days: int
    latency_ms: float
    start: date

    @property
    def last_day(self) -> date:
        return self.start + timedelta(days=self.days - 1)

    @property
    def partition_range(self) -> str:
        """The `--partition-range` argument that covers every day of the sandbox."""
        return f"{self.start.isoformat()}...{self.last_day.isoformat()}"

    @property
    def window(self) -> Window:
        """The one window a range run of all days fetches."""
        start = datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)
        return Window(start=start, end=start + timedelta(days=self.days))

    @property
    def max_requests_per_second(self) -> float:
        """The request rate (b) runs with: unthrottled at 0 ms, else the project's default."""
        if self.latency_ms == 0:
            return UNTHROTTLED_REQUESTS_PER_SECOND
        return DEFAULT_MAX_REQUESTS_PER_SECOND

    @property
    def slug(self) -> str:
        return f"{self.invoices}-{self.latency_ms:g}ms"

    def describe(self) -> str:
        return (
            f"{self.invoices:,} invoices, {self.orders:,} orders, {self.days} days, "
            f"{self.latency_ms:g} ms latency"
        )


@contextmanager
def running_sandbox(workload: Workload, workdir: Path) -> Iterator[SandboxProcess]:
    """The sandbox of `workload` in its own process while the block runs."""
    flags = [
        "--start", workload.start.isoformat(), "--days", str(workload.days),
        "--invoices", str(workload.invoices), "--orders", str(workload.orders),
        "--latency-ms", f"{workload.latency_ms:g}",
    ]  # fmt: skip
    with sandbox_server_process(
        workdir, *flags, log=workdir / "sandbox.log", start_timeout_s=SANDBOX_START_TIMEOUT_S
    ) as server:
        yield server
