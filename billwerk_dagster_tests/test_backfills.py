"""Backfills as a user launches them from the UI: a real `dagster dev` (webserver, daemon,
code server) on a temporary DAGSTER_HOME that holds the repository's dagster.yaml, a
sandbox in its own process, and two overlapping backfills of the invoices asset sent
through the UI's GraphQL API at once. Each backfill runs as a single run; the second waits
in the queue for the warehouse pool instead of failing on DuckDB's lock; both succeed and
DuckDB holds every invoice of both ranges exactly once."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pytest
import requests
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
from dagster._core.instance.ref import InstanceRef
from dagster._core.storage.tags import BACKFILL_ID_TAG

from billwerk_dagster.billwerk.endpoints import INVOICES
from billwerk_dagster.billwerk.window import Window
from billwerk_dagster.demo import WORKSPACE, link_instance_config
from billwerk_dagster.orchestration.assets import WAREHOUSE_POOL, WINDOWED_PIPELINE, asset_key
from billwerk_dagster.sandbox import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SandboxClient

START = date(2024, 1, 1)
RANGES = (("2024-01-01", "2024-01-14"), ("2024-01-08", "2024-01-20"))
STARTUP_SECONDS = 120
BACKFILL_SECONDS = 240
# The step of the windowed multi-asset: the one that writes invoices.
WRITER = WINDOWED_PIPELINE

T = TypeVar("T")

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionKeysNotFoundError { message }
  }
}
"""
LOCATIONS = """
{ workspaceOrError { ... on Workspace { locationEntries {
    name loadStatus locationOrLoadError { __typename ... on PythonError { message } }
} } } }
"""


def _wait_for(what: str, seconds: float, probe: Callable[[], T | None], log: Path) -> T:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            return value
        time.sleep(1.0)
    tail = log.read_text(errors="replace")[-4000:] if log.exists() else ""
    raise AssertionError(f"gave up waiting {seconds:.0f}s for {what}; dagster dev said:\n{tail}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process, then to its session (its children) if it does not go."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture
def sandbox_process(tmp_path: Path) -> Iterator[str]:
    port_file = tmp_path / "sandbox.port"
    command = [
        sys.executable, "-m", "billwerk_dagster.sandbox", "--port", "0",
        "--port-file", str(port_file), "--start", START.isoformat(), "--days", "20",
        "--customers", "40", "--contracts", "50", "--invoices", "900", "--orders", "80",
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = _wait_for(
            "the sandbox",
            60,
            lambda: port_file.read_text().strip() if port_file.exists() else None,
            tmp_path / "none",
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


@dataclass
class DagsterDev:
    url: str
    home: Path
    data: Path
    log: Path

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
        )
        answer.raise_for_status()
        body: dict[str, Any] = answer.json()
        assert "errors" not in body, body["errors"]
        return dict(body["data"])


@pytest.fixture
def dagster_dev(tmp_path: Path, sandbox_process: str) -> Iterator[DagsterDev]:
    home, data, log = tmp_path / "dagster_home", tmp_path / "data", tmp_path / "dagster_dev.log"
    link_instance_config(home)
    port = _free_port()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "BILLWERK_BASE_URL": sandbox_process,
        "BILLWERK_CLIENT_ID": DEFAULT_CLIENT_ID,
        "BILLWERK_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "BILLWERK_START_DATE": START.isoformat(),
        "BILLWERK_DATA_DIR": str(data),
    }
    command = [sys.executable, "-m", "dagster", "dev", "-w", str(WORKSPACE), "-p", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, cwd=home, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    dev = DagsterDev(url=f"http://127.0.0.1:{port}", home=home, data=data, log=log)
    try:
        _wait_for("the code location to load", STARTUP_SECONDS, lambda: _loaded(dev), log)
        yield dev
    finally:
        _stop(process)


def _loaded(dev: DagsterDev) -> bool | None:
    try:
        entries = dev.graphql(LOCATIONS)["workspaceOrError"]["locationEntries"]
    except (requests.RequestException, KeyError, AssertionError):
        return None
    loaded = [e for e in entries if e["loadStatus"] == "LOADED"]
    if loaded and loaded[0]["locationOrLoadError"]["__typename"] == "PythonError":
        raise AssertionError(loaded[0]["locationOrLoadError"]["message"])
    return True if loaded else None


def _days(first: str, last: str) -> list[str]:
    day, end, days = date.fromisoformat(first), date.fromisoformat(last), []
    while day <= end:
        days.append(day.isoformat())
        day += timedelta(days=1)
    return days


def test_two_overlapping_ui_backfills_take_turns_and_both_succeed(
    dagster_dev: DagsterDev, sandbox_process: str
) -> None:
    invoices = asset_key(INVOICES)
    backfills = []
    for first, last in RANGES:
        params = {"assetSelection": [{"path": invoices.path}], "partitionNames": _days(first, last)}
        launched = dagster_dev.graphql(LAUNCH_BACKFILL, {"params": params})
        answer = launched["launchPartitionBackfill"]
        assert answer["__typename"] == "LaunchBackfillSuccess", answer
        backfills.append(answer["backfillId"])

    with DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_dev.home))) as instance:

        def finished_runs() -> list[Any] | None:
            runs = [
                instance.get_run_records(RunsFilter(tags={BACKFILL_ID_TAG: backfill}))
                for backfill in backfills
            ]
            done = all(r and r[0].dagster_run.is_finished for r in runs)
            return [record for per_backfill in runs for record in per_backfill] if done else None

        records = _wait_for("both backfill runs", BACKFILL_SECONDS, finished_runs, dagster_dev.log)
        pool = instance.event_log_storage.get_concurrency_info(WAREHOUSE_POOL)
        writes = {
            r.dagster_run.run_id: next(
                s for s in instance.get_run_step_stats(r.dagster_run.run_id) if s.step_key == WRITER
            )
            for r in records
        }

    # One run per backfill, over its whole range, and each succeeded.
    assert len(records) == len(RANGES)
    for record, (first, last) in zip(
        sorted(records, key=lambda r: r.dagster_run.tags["dagster/asset_partition_range_start"]),
        RANGES,
        strict=True,
    ):
        run = record.dagster_run
        assert run.status == DagsterRunStatus.SUCCESS, run.run_id
        assert run.tags["dagster/asset_partition_range_start"] == first
        assert run.tags["dagster/asset_partition_range_end"] == last

    # They took turns: both were launched before either wrote, and the writes did not overlap.
    first_write, second_write = sorted(writes.values(), key=lambda w: w.start_time or 0)
    assert first_write.end_time is not None and second_write.start_time is not None
    assert all(r.create_timestamp.timestamp() < first_write.end_time for r in records)
    assert first_write.end_time <= second_write.start_time
    assert pool.slot_count == 1

    # Every invoice of both ranges is there once.
    window = Window(
        datetime.fromisoformat(RANGES[0][0]).replace(tzinfo=UTC),
        datetime.fromisoformat(RANGES[1][1]).replace(tzinfo=UTC) + timedelta(days=1),
    )
    expected = SandboxClient(sandbox_process).ids(INVOICES.name, window.date_from, window.date_to)
    with duckdb.connect(str(dagster_dev.data / "warehouse.duckdb"), read_only=True) as db:
        loaded = [
            row[0] for row in db.execute(f"select id from billwerk.{INVOICES.name}").fetchall()
        ]
    assert len(loaded) == len(set(loaded)), "duplicate invoice ids"
    assert set(loaded) == set(expected)
