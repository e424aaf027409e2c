"""The project's settings, read from the environment once, when definitions are built.

Only settings needed to *define* assets live here (start date, where the warehouse is).
Credentials are not read here: they reach the Billwerk resource through `EnvVar` at run
time, so loading the definitions needs none and the UI never shows them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

from billwerk_dagster.billwerk.errors import BillwerkConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_START_DATE = date(2024, 1, 1)
DEFAULT_DATA_DIR = PROJECT_ROOT / "data"
# Not "billwerk.duckdb": a file named like the dataset makes DuckDB's catalog ambiguous.
DEFAULT_DUCKDB_FILE = "warehouse.duckdb"
DATASET_NAME = "billwerk"
# How a run executes its steps. In one process by default: a run's steps (the load, then
# its checks) go one after the other through the warehouse pool anyway, and a process per
# step costs a fresh import of Dagster, dlt and Arrow each time.
EXECUTORS = ("in_process", "multiprocess")
# DuckDB's buffer memory while it loads; beyond it DuckDB spills to `<file>.tmp`. Without a
# cap it caches as much of the tables as the machine allows, so the load's memory grew with
# the backfill. The load only streams (copy, delete by key, insert; no deduplication, see
# `tables.arrow_items`), which needs little: measured with `bench`, 32MB loads 1,000,000
# invoices in one run, and the peak at 200,000 was 5% above the one at 20,000 (64MB: 11%).
DEFAULT_DUCKDB_MEMORY_LIMIT = "32MB"
_MEMORY_SIZE = re.compile(r"\d+(\.\d+)?\s*([KMGT]i?B)", re.IGNORECASE)


@dataclass(frozen=True)
class Settings:
    start_date: date
    destination: str
    duckdb_path: Path
    pipelines_dir: Path
    dataset_name: str = DATASET_NAME
    executor: str = EXECUTORS[0]
    duckdb_memory_limit: str = DEFAULT_DUCKDB_MEMORY_LIMIT

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        data_dir = Path(env.get("BILLWERK_DATA_DIR") or DEFAULT_DATA_DIR)
        return cls(
            start_date=parse_start_date(env.get("BILLWERK_START_DATE")),
            destination=env.get("BILLWERK_DESTINATION") or "duckdb",
            duckdb_path=Path(env.get("BILLWERK_DUCKDB_PATH") or data_dir / DEFAULT_DUCKDB_FILE),
            pipelines_dir=Path(env.get("BILLWERK_PIPELINES_DIR") or data_dir / "dlt_pipelines"),
            executor=parse_executor(env.get("BILLWERK_EXECUTOR")),
            duckdb_memory_limit=parse_memory_size(env.get("BILLWERK_DUCKDB_MEMORY_LIMIT")),
        )


def parse_memory_size(value: str | None) -> str:
    """`BILLWERK_DUCKDB_MEMORY_LIMIT` as DuckDB writes sizes: a number and KB, MB, GB, TB."""
    if not value:
        return DEFAULT_DUCKDB_MEMORY_LIMIT
    if not _MEMORY_SIZE.fullmatch(value.strip()):
        raise BillwerkConfigError(
            f"BILLWERK_DUCKDB_MEMORY_LIMIT must be a size such as 64MB or 1GB, got {value!r}."
        )
    return value.strip()


def parse_executor(value: str | None) -> str:
    """`BILLWERK_EXECUTOR`: how a run executes its steps."""
    if not value:
        return EXECUTORS[0]
    if value.strip() not in EXECUTORS:
        raise BillwerkConfigError(
            f"BILLWERK_EXECUTOR must be one of {', '.join(EXECUTORS)}, got {value!r}."
        )
    return value.strip()


def parse_start_date(value: str | None) -> date:
    """`BILLWERK_START_DATE` as a date: YYYY-MM-DD, not in the future."""
    if not value:
        return DEFAULT_START_DATE
    try:
        start = date.fromisoformat(value.strip())
    except ValueError:
        raise BillwerkConfigError(
            f"BILLWERK_START_DATE must be a date as YYYY-MM-DD, got {value!r}."
        ) from None
    today = datetime.now(UTC).date()
    if start > today:
        raise BillwerkConfigError(
            f"BILLWERK_START_DATE {start} lies in the future (today is {today} UTC): set it to "
            "the day of your account's first invoice or order."
        )
    return start
