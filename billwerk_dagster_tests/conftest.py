"""Shared fixtures: a generated Billwerk account served by the local sandbox over real HTTP,
settings that put the warehouse and dlt's working folders under `tmp_path`, and a `Project`
that materializes the real assets into DuckDB and reads the rows back."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    ExecuteInProcessResult,
    materialize,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from billwerk_dagster.billwerk.endpoints import SNAPSHOT_ENDPOINTS, WINDOWED_ENDPOINTS
from billwerk_dagster.orchestration.assets import asset_key
from billwerk_dagster.orchestration.definitions import build_definitions
from billwerk_dagster.orchestration.resources import BillwerkResource
from billwerk_dagster.orchestration.settings import Settings
from billwerk_dagster.sandbox import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    Sandbox,
    SandboxData,
    generate,
)

START = date(2024, 1, 1)
DAYS = 40  # holds one month-end billing run (Jan 31) and every other edge case
SNAPSHOT_KEYS = [asset_key(e) for e in SNAPSHOT_ENDPOINTS]
WINDOWED_KEYS = [asset_key(e) for e in WINDOWED_ENDPOINTS]


@pytest.fixture
def sandbox_data() -> SandboxData:
    return generate(
        seed=7, start=START, days=DAYS, customers=60, contracts=80, invoices=1600, orders=300,
        burst=620,
    )  # fmt: skip


@pytest.fixture
def sandbox(sandbox_data: SandboxData) -> Iterator[Sandbox]:
    # Seed 2 makes a 25% fault rate fire on about a quarter of a test run's requests.
    with Sandbox(sandbox_data, fault_seed=2) as running:
        yield running


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        start_date=START,
        destination="duckdb",
        duckdb_path=tmp_path / "warehouse" / "warehouse.duckdb",
        pipelines_dir=tmp_path / "dlt_pipelines",
    )


def billwerk_for(sandbox: Sandbox, **overrides: Any) -> BillwerkResource:
    """The Billwerk resource pointed at `sandbox`, with retry waits shrunk for tests."""
    config: dict[str, Any] = {
        "base_url": sandbox.url,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "backoff_seconds": 0.01,
        "max_backoff_seconds": 0.05,
        **overrides,
    }
    return BillwerkResource(**config)


@dataclass
class Project:
    """The real definitions, run in-process against a sandbox into a DuckDB file."""

    settings: Settings
    billwerk: BillwerkResource
    instance: DagsterInstance

    def materialize(
        self,
        keys: Sequence[AssetKey],
        first_day: str | None = None,
        last_day: str | None = None,
        raise_on_error: bool = True,
    ) -> ExecuteInProcessResult:
        defs = build_definitions(self.settings, billwerk=self.billwerk)
        tags = {}
        if first_day is not None:
            tags = {
                ASSET_PARTITION_RANGE_START_TAG: first_day,
                ASSET_PARTITION_RANGE_END_TAG: last_day or first_day,
            }
        return materialize(
            list(defs.assets or []),  # type: ignore[arg-type]
            resources=defs.resources,
            selection=list(keys),
            tags=tags,
            instance=self.instance,
            raise_on_error=raise_on_error,
        )

    def load_snapshots(self) -> ExecuteInProcessResult:
        return self.materialize(SNAPSHOT_KEYS)

    def load_snapshots_allowing_failure(self) -> ExecuteInProcessResult:
        return self.materialize(SNAPSHOT_KEYS, raise_on_error=False)

    def load_days(self, first_day: str, last_day: str | None = None) -> ExecuteInProcessResult:
        return self.materialize(WINDOWED_KEYS, first_day, last_day)

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.settings.duckdb_path), read_only=True) as db:
            return db.execute(sql, list(params)).fetchall()

    def ids(self, table: str) -> list[str]:
        return [row[0] for row in self.rows(f"select id from billwerk.{table}")]


@pytest.fixture
def project(settings: Settings, sandbox: Sandbox) -> Iterator[Project]:
    with DagsterInstance.ephemeral() as instance:
        yield Project(settings=settings, billwerk=billwerk_for(sandbox), instance=instance)
