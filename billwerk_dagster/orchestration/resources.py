"""Dagster resources: the Billwerk account and the warehouse dlt loads into."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dlt
from dagster import ConfigurableResource, EnvVar
from dlt.common.destination import Destination
from dlt.destinations.impl.duckdb.configuration import DuckDbCredentials
from pydantic import Field

from billwerk_dagster.billwerk.client import (
    DEFAULT_MAX_REQUESTS_PER_SECOND,
    DEFAULT_WORKERS,
    MAX_WORKERS,
    BillwerkConnection,
)
from billwerk_dagster.billwerk.endpoints import MAX_PAGE_SIZE
from billwerk_dagster.billwerk.errors import BillwerkConfigError
from billwerk_dagster.orchestration.settings import DEFAULT_DUCKDB_MEMORY_LIMIT, Settings

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://sandbox.billwerk.com"
# The source yields Arrow tables: as parquet they pass dlt's normalizer untouched.
LOADER_FILE_FORMAT = "parquet"
REPLACE_STRATEGY = "insert-from-staging"


class BillwerkResource(ConfigurableResource):
    """One Billwerk account: host, OAuth client and how patiently to talk to it."""

    base_url: str = Field(default=DEFAULT_BASE_URL, description="sandbox, live or own domain")
    client_id: str = Field(description="OAuth2 client id (BILLWERK_CLIENT_ID)")
    client_secret: str = Field(
        description="OAuth2 client secret (BILLWERK_CLIENT_SECRET)", repr=False
    )
    legal_entity_id: str | None = Field(default=None, description="X-SELECTED-LEGAL-ENTITY-ID")
    page_size: int = Field(default=MAX_PAGE_SIZE, description="records per request, 2..500")
    workers: int = Field(
        default=DEFAULT_WORKERS,
        description=f"sub-windows of a range fetched at once, 1..{MAX_WORKERS} (1: sequential)",
    )
    max_requests_per_second: float = Field(
        default=DEFAULT_MAX_REQUESTS_PER_SECOND,
        description="requests per second, all threads, retries and token requests included",
    )
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 60.0
    max_attempts: int = Field(default=6, description="tries per request before failing")
    backoff_seconds: float = Field(default=10.0, description="first wait after an HTTP error")
    max_backoff_seconds: float = Field(default=120.0, description="longest wait between tries")

    def connection(self) -> BillwerkConnection:
        """The validated connection; a `BillwerkConfigError` names the setting to fix."""
        return BillwerkConnection(
            base_url=self.base_url,
            client_id=self.client_id,
            client_secret=self.client_secret,
            legal_entity_id=self.legal_entity_id or None,
            page_size=self.page_size,
            workers=self.workers,
            max_requests_per_second=self.max_requests_per_second,
            connect_timeout_seconds=self.connect_timeout_seconds,
            read_timeout_seconds=self.read_timeout_seconds,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
            max_backoff_seconds=self.max_backoff_seconds,
        )

    @classmethod
    def from_env(cls) -> BillwerkResource:
        """Wired to the environment; the id and secret stay `EnvVar`s, resolved at run time."""
        return cls(
            base_url=os.environ.get("BILLWERK_BASE_URL") or DEFAULT_BASE_URL,
            client_id=EnvVar("BILLWERK_CLIENT_ID"),
            client_secret=EnvVar("BILLWERK_CLIENT_SECRET"),
            legal_entity_id=os.environ.get("BILLWERK_LEGAL_ENTITY_ID") or None,
            page_size=cls._whole_number_from_env("BILLWERK_PAGE_SIZE", MAX_PAGE_SIZE),
            workers=cls._whole_number_from_env("BILLWERK_WORKERS", DEFAULT_WORKERS),
            max_requests_per_second=cls._number_from_env(
                "BILLWERK_MAX_REQUESTS_PER_SECOND", DEFAULT_MAX_REQUESTS_PER_SECOND
            ),
        )

    @staticmethod
    def _number_from_env(name: str, default: float) -> float:
        """`name` as a number, `default` when unset; `BillwerkConnection` checks the range."""
        value = os.environ.get(name)
        if not value:
            return default
        try:
            return float(value)
        except ValueError:
            raise BillwerkConfigError(f"{name} must be a number, got {value!r}.") from None

    @staticmethod
    def _whole_number_from_env(name: str, default: int) -> int:
        value = os.environ.get(name)
        if not value:
            return default
        try:
            return int(value)
        except ValueError:
            raise BillwerkConfigError(f"{name} must be a whole number, got {value!r}.") from None


class WarehouseResource(ConfigurableResource):
    """Where dlt loads: DuckDB by default, any dlt destination by name.

    For a destination other than DuckDB, dlt reads its credentials from its own config,
    e.g. `DESTINATION__POSTGRES__CREDENTIALS`.
    """

    destination: str = "duckdb"
    duckdb_path: str
    pipelines_dir: str
    dataset_name: str = "billwerk"
    duckdb_memory_limit: str = Field(
        default=DEFAULT_DUCKDB_MEMORY_LIMIT,
        description="DuckDB's buffer memory while loading; beyond it DuckDB spills to disk",
    )

    @classmethod
    def from_settings(cls, settings: Settings) -> WarehouseResource:
        return cls(
            destination=settings.destination,
            duckdb_path=str(settings.duckdb_path),
            pipelines_dir=str(settings.pipelines_dir),
            dataset_name=settings.dataset_name,
            duckdb_memory_limit=settings.duckdb_memory_limit,
        )

    @property
    def is_duckdb(self) -> bool:
        return self.destination == "duckdb"

    def pipeline(self, name: str, *, for_definitions: bool = False) -> dlt.Pipeline:
        """The dlt pipeline `name`, its working folder under `pipelines_dir`.

        `for_definitions` gives the copy that `@dlt_assets` keeps for its asset specs, in a
        folder of its own: a code server loading definitions must never touch the working
        folder that a run is resetting at the same moment.
        """
        credentials: DuckDbCredentials | None = None
        if self.is_duckdb:
            Path(self.duckdb_path).parent.mkdir(parents=True, exist_ok=True)
            credentials = DuckDbCredentials(
                self.duckdb_path, global_config={"memory_limit": self.duckdb_memory_limit}
            )
        destination = Destination.from_reference(
            self.destination,
            credentials=credentials,
            # Snapshots load into a staging table and swap in one transaction, so a failed
            # load leaves the previous snapshot whole instead of a truncated table.
            replace_strategy=REPLACE_STRATEGY,
        )
        pipelines_dir = Path(self.pipelines_dir)
        return dlt.pipeline(
            pipeline_name=name,
            pipelines_dir=str(pipelines_dir / "definitions" if for_definitions else pipelines_dir),
            destination=destination,
            dataset_name=self.dataset_name,
        )

    @contextmanager
    def writer_lock(self, pipeline_name: str | None = None) -> Iterator[None]:
        """Serialize, across processes, the runs that would collide.

        DuckDB allows one writing process per file, so every DuckDB run (and reader) takes
        one lock per file. Any destination: dagster-dlt resets a pipeline's working folder
        at each run, so two runs of one pipeline on this machine take its lock. A Dagster
        pool does the same job when the instance sets a limit; this lock holds when it does
        not (a fresh DAGSTER_HOME, `materialize()` in tests).
        """
        if self.is_duckdb:
            lock_path = Path(f"{self.duckdb_path}.writer.lock")
        elif pipeline_name is not None:
            lock_path = Path(self.pipelines_dir) / f"{pipeline_name}.lock"
        else:
            yield
            return
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with lock_path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.info("Another run holds %s; waiting for it", lock_path)
                fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
