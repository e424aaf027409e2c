"""Windowed endpoints read as sub-windows at once (`workers`), against the sandbox into DuckDB.

The parallel path loads exactly what the sequential one loads, month-end burst included,
with at most one extra request per sub-window and one token; every request, retries and
token requests included, keeps to `max_requests_per_second` as the sandbox counts them; a
failing sub-window fails the run with the sequential path's message and stops the others;
closing the resource early stops every thread. Also: how a window splits into whole days,
the rate limiter and the bounded hand-off on their own, and the settings' checks.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Generator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from dagster import AssetKey, DagsterInstance, ExecuteInProcessResult

from billwerk_dagster.billwerk.client import BillwerkConnection
from billwerk_dagster.billwerk.concurrency import RateLimiter, interleave
from billwerk_dagster.billwerk.endpoints import ENDPOINTS, INVOICES, WINDOWED_ENDPOINTS
from billwerk_dagster.billwerk.errors import BillwerkConfigError
from billwerk_dagster.billwerk.source import PAGES_AHEAD_PER_WORKER, SyncStats, billwerk_source
from billwerk_dagster.billwerk.tables import BATCH_PAGES
from billwerk_dagster.billwerk.window import Window
from billwerk_dagster.orchestration.assets import asset_key
from billwerk_dagster.orchestration.resources import BillwerkResource
from billwerk_dagster.orchestration.settings import Settings
from billwerk_dagster.sandbox import Sandbox, SandboxData, Stats
from billwerk_dagster_tests.conftest import START, WINDOWED_KEYS, Project, billwerk_for

# Two weeks around the sandbox's month-end billing run of January 31st.
FIRST, LAST = "2024-01-24", "2024-02-06"
RANGE = Window(datetime(2024, 1, 24, tzinfo=UTC), datetime(2024, 2, 7, tzinfo=UTC))
WORKERS = 4
PAGE_SIZE = 50  # many pages from little data


@dataclass
class Load:
    """One materialization into a warehouse of its own, and what the sandbox saw of it."""

    project: Project
    result: ExecuteInProcessResult
    seen: Stats

    def metadata(self, name: str) -> dict[str, Any]:
        by_asset = {
            m.asset_key: m.metadata
            for m in self.result.asset_materializations_for_node("billwerk_windowed")
        }
        return {key: value.value for key, value in by_asset[asset_key(ENDPOINTS[name])].items()}

    def failure(self) -> str:
        [failure] = self.result.get_step_failure_events()
        error = failure.step_failure_data.error
        assert error is not None
        return error.message


def _snake(field: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in field).lstrip("_")


def _load(
    sandbox: Sandbox,
    folder: Path,
    keys: list[AssetKey] = WINDOWED_KEYS,
    days: tuple[str, str] = (FIRST, LAST),
    page_size: int = PAGE_SIZE,
    **billwerk: Any,
) -> Load:
    settings = Settings(
        start_date=START,
        destination="duckdb",
        duckdb_path=folder / "warehouse.duckdb",
        pipelines_dir=folder / "dlt_pipelines",
    )
    sandbox.reset_stats()
    with DagsterInstance.ephemeral() as instance:
        project = Project(
            settings, billwerk_for(sandbox, page_size=page_size, **billwerk), instance
        )
        result = project.materialize(keys, *days, raise_on_error=False)
    return Load(project, result, sandbox.stats)


def test_parallel_and_sequential_loads_hold_the_same_ids_through_a_month_end_burst(
    sandbox: Sandbox, sandbox_data: SandboxData, tmp_path: Path
) -> None:
    edges = sandbox_data.edges
    assert FIRST <= edges.burst_days[0].isoformat() <= LAST
    assert edges.burst_size > 10 * PAGE_SIZE

    sequential = _load(sandbox, tmp_path / "sequential", workers=1)
    parallel = _load(sandbox, tmp_path / "parallel", workers=WORKERS)

    assert sequential.result.success and parallel.result.success
    for endpoint in WINDOWED_ENDPOINTS:
        name, [nested] = endpoint.name, endpoint.nested_lists
        expected = sandbox.ids(name, RANGE.date_from, RANGE.date_to)
        for load in (sequential, parallel):
            loaded = load.project.ids(name)
            assert Counter(loaded).most_common(1)[0][1] == 1, f"{name} has duplicates"
            assert set(loaded) == expected, name
        records = [r for r in sandbox_data.records(name) if r["Id"] in expected]
        children = sum(len(r.get(nested) or []) for r in records)
        child = f"{name}__{_snake(nested)}"
        for load in (sequential, parallel):
            assert load.project.rows(f"select count(*) from billwerk.{child}")[0][0] == children
    burst = parallel.project.rows(
        "select count(*) from billwerk.invoices where created = ?::timestamptz",
        [edges.burst_created[0][:26] + "Z"],
    )[0][0]
    assert burst == edges.burst_size


def test_a_sloppy_date_filter_still_loads_each_record_once_from_its_own_sub_window(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # The load skips dlt's deduplication of staging rows because each Id comes once. A
    # server that also sends the neighbouring sub-window's records near each edge must
    # not break that: every sub-window keeps only the records created inside it.
    sandbox.faults.widen_window(6 * 3600, count=None)

    load = _load(sandbox, tmp_path, workers=WORKERS)

    assert load.result.success
    for name in (e.name for e in WINDOWED_ENDPOINTS):
        loaded = load.project.ids(name)
        assert Counter(loaded).most_common(1)[0][1] == 1, f"{name} has duplicates"
        assert set(loaded) == sandbox.ids(name, RANGE.date_from, RANGE.date_to), name
        assert load.metadata(name)["records_fetched"] > len(loaded), "the fault never fired"


def test_parallel_load_costs_at_most_one_request_more_per_sub_window_and_one_token(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sub_windows = len(RANGE.split(WORKERS))
    assert sub_windows == WORKERS

    sequential = _load(sandbox, tmp_path / "sequential", workers=1)
    parallel = _load(sandbox, tmp_path / "parallel", workers=WORKERS)

    assert sequential.seen.requests[INVOICES.name] > 2 * sub_windows, "too few pages to tell"
    for name in (e.name for e in WINDOWED_ENDPOINTS):
        assert parallel.seen.requests[name] <= sequential.seen.requests[name] + sub_windows
        # The counts the threads kept add up to what the sandbox saw.
        metadata = parallel.metadata(name)
        assert metadata["requests"] == metadata["pages"] == parallel.seen.requests[name]
        assert metadata["records_fetched"] == len(parallel.project.ids(name))
    assert parallel.seen.token_requests == 1


def test_every_request_keeps_to_the_rate_limit_retries_and_token_requests_included(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    limit = 5
    sandbox.faults.status(503, endpoint=INVOICES.name, count=2)
    sandbox.faults.revoke_tokens(endpoint=INVOICES.name, after=4)

    load = _load(
        sandbox,
        tmp_path,
        [asset_key(INVOICES)],
        ("2024-01-02", "2024-01-09"),
        workers=WORKERS,
        page_size=20,
        max_requests_per_second=limit,
    )

    assert load.result.success
    assert load.seen.token_requests == 2  # the first token and the one after revocation
    assert load.seen.requests[INVOICES.name] >= 3 * limit
    # Reached, so the count could have shown more; never exceeded.
    assert load.seen.max_requests_per_second == limit


def test_a_failing_sub_window_fails_the_run_with_the_sequential_message_and_stops_the_rest(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    sandbox.faults.status(404, endpoint=INVOICES.name)
    sequential = _load(sandbox, tmp_path / "sequential", [asset_key(INVOICES)], workers=1)

    sandbox.faults.set_latency(50)
    failing_request = 6
    sandbox.faults.status(404, endpoint=INVOICES.name, after=failing_request - 1)
    started = time.monotonic()
    parallel = _load(sandbox, tmp_path / "parallel", [asset_key(INVOICES)], workers=WORKERS)
    seconds = time.monotonic() - started

    assert not parallel.result.success
    assert parallel.failure() == sequential.failure()
    assert f"HTTP 404 for /invoices at {sandbox.url}" in parallel.failure()
    # Each other thread may finish the request it has begun, and start at most one more
    # before it learns of the failure; then it stops.
    arrivals = sorted(e.time for e in parallel.seen.log if e.endpoint == INVOICES.name)
    failed = next(e.time for e in parallel.seen.log if e.status == 404)
    assert len([t for t in arrivals if t > failed]) <= 2 * (WORKERS - 1)
    full_fetch = len(sandbox.ids(INVOICES.name, RANGE.date_from, RANGE.date_to)) // PAGE_SIZE
    assert len(arrivals) < full_fetch / 2
    assert seconds < 10


def test_a_server_ignoring_the_cursor_fails_the_parallel_run_too(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    # From the fifth request on; the burst's sub-window has many pages, so cursors follow.
    sandbox.faults.ignore_from(endpoint=INVOICES.name, after=WORKERS, count=None)

    load = _load(sandbox, tmp_path, [asset_key(INVOICES)], workers=WORKERS)

    assert "does not honour the cursor" in load.failure()
    assert load.seen.requests[INVOICES.name] <= 3 * WORKERS


def test_refused_credentials_stop_every_thread_after_one_token_request(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    load = _load(sandbox, tmp_path, workers=WORKERS, client_secret="not-it-9c1d")

    assert "check BILLWERK_CLIENT_ID and BILLWERK_CLIENT_SECRET" in load.failure()
    assert load.seen.token_requests == 1
    assert load.seen.api_requests == 0


def test_closing_the_resource_early_stops_every_thread(sandbox: Sandbox) -> None:
    sandbox.faults.set_latency(50)
    billwerk = billwerk_for(sandbox, page_size=PAGE_SIZE, workers=WORKERS)
    stats = SyncStats()
    source = billwerk_source(billwerk.connection(), RANGE, stats).with_resources(INVOICES.name)

    # dlt closes the resource's generator once it has handed on the first batch of pages
    # (the invoices' table and their items' table).
    tables = list(source.resources[INVOICES.name].add_limit(2))

    assert [table.num_rows > 0 for table in tables] == [True, True]
    assert not [t for t in threading.enumerate() if t.name.startswith("billwerk-")]
    requests = sandbox.stats.requests[INVOICES.name]
    assert requests == stats[INVOICES.name].requests
    # The batch, the pages waiting in the hand-off queue and one in each worker's hands.
    assert requests <= BATCH_PAGES + (PAGES_AHEAD_PER_WORKER + 1) * WORKERS
    assert requests < len(sandbox.ids(INVOICES.name, RANGE.date_from, RANGE.date_to)) / PAGE_SIZE
    time.sleep(0.2)
    assert sandbox.stats.requests[INVOICES.name] == requests


def _day(day: int, hour: int = 0) -> datetime:
    return datetime(2024, 1, day, hour, tzinfo=UTC)


@pytest.mark.parametrize(
    ("window", "parts", "days"),
    [
        (Window(_day(1), _day(31)), 4, [7, 8, 7, 8]),
        (Window(_day(1), _day(31)), 1, [30]),
        (Window(_day(1), _day(4)), 4, [1, 1, 1]),
        (Window(_day(1), _day(2)), 4, [1]),
        (Window(_day(1, 5), _day(1, 9)), 4, [4 / 24]),
        (Window(_day(1, 12), _day(3, 6)), 4, [0.5, 1, 0.25]),
    ],
)
def test_a_window_splits_into_contiguous_whole_days_covering_it_exactly(
    window: Window, parts: int, days: list[float]
) -> None:
    split = window.split(parts)

    assert [(w.end - w.start) / timedelta(days=1) for w in split] == days
    assert split[0].start == window.start and split[-1].end == window.end
    for earlier, later in pairwise(split):
        assert earlier.end == later.start
        assert later.start.astimezone(UTC).time() == datetime.min.time()
        # Inclusive API bounds: the next sub-window starts one 100 ns tick after this one.
        assert earlier.date_to < later.date_from


def test_a_window_cannot_split_into_no_parts() -> None:
    with pytest.raises(ValueError, match="0 parts"):
        Window(_day(1), _day(2)).split(0)


def test_the_rate_limiter_spaces_request_starts_across_threads() -> None:
    limiter = RateLimiter(per_second=50)
    starts: list[float] = []
    cpu = time.process_time()

    def send_five() -> None:
        for _ in range(5):
            limiter.wait()
            starts.append(time.monotonic())

    threads = [threading.Thread(target=send_five) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(starts) == 20
    assert max(starts) - min(starts) >= 0.38  # 19 gaps of 1/50 s, less a little jitter
    assert time.process_time() - cpu < 0.2, "waiting threads must sleep, not spin"


def test_interleave_keeps_a_bounded_number_of_items_in_flight() -> None:
    produced = consumed = 0
    lock = threading.Lock()
    buffer, streams = 4, 3

    def stream() -> Generator[int, None, None]:
        nonlocal produced
        for item in range(200):
            with lock:
                produced += 1
            yield item

    for _ in interleave([stream] * streams, buffer=buffer, name="test-interleave"):
        consumed += 1
        with lock:
            # Those waiting in the queue, and one held by each thread.
            assert produced - consumed <= buffer + streams

    assert consumed == produced == 200 * streams


def test_interleave_raises_the_first_error_and_stops_the_other_streams() -> None:
    stopped = threading.Event()

    running = threading.Event()

    def failing() -> Generator[int, None, None]:
        yield 1
        running.wait(timeout=5)
        raise RuntimeError("sub-window failed")

    def endless() -> Generator[int, None, None]:
        running.set()
        try:
            while True:
                yield 0
        finally:
            stopped.set()

    with pytest.raises(RuntimeError, match="sub-window failed"):
        for _ in interleave([failing, endless], buffer=2, name="test-interleave"):
            pass
    assert stopped.is_set()


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("workers", 0, "BILLWERK_WORKERS must be between 1"),
        ("workers", 17, "BILLWERK_WORKERS must be between 1"),
        ("max_requests_per_second", 0, "BILLWERK_MAX_REQUESTS_PER_SECOND must be a number above 0"),
        ("max_requests_per_second", -2.5, "BILLWERK_MAX_REQUESTS_PER_SECOND must be"),
        ("max_requests_per_second", float("nan"), "BILLWERK_MAX_REQUESTS_PER_SECOND must be"),
    ],
)
def test_a_bad_parallel_setting_names_its_variable(
    setting: str, value: float, expected: str
) -> None:
    with pytest.raises(BillwerkConfigError, match=expected):
        BillwerkConnection(
            **{
                "base_url": "https://billwerk.invalid",
                "client_id": "a",
                "client_secret": "b",
                setting: value,
            }  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("BILLWERK_WORKERS", "four", "BILLWERK_WORKERS must be a whole number, got 'four'"),
        ("BILLWERK_MAX_REQUESTS_PER_SECOND", "fast", "BILLWERK_MAX_REQUESTS_PER_SECOND must be"),
    ],
)
def test_a_malformed_parallel_variable_is_named(
    variable: str, value: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(BillwerkConfigError, match=expected):
        BillwerkResource.from_env()


def test_the_parallel_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BILLWERK_WORKERS", "1")
    monkeypatch.setenv("BILLWERK_MAX_REQUESTS_PER_SECOND", "2.5")
    billwerk = BillwerkResource.from_env()
    assert (billwerk.workers, billwerk.max_requests_per_second) == (1, 2.5)

    monkeypatch.delenv("BILLWERK_WORKERS")
    monkeypatch.delenv("BILLWERK_MAX_REQUESTS_PER_SECOND")
    billwerk = BillwerkResource.from_env()
    assert (billwerk.workers, billwerk.max_requests_per_second) == (4, 20)
