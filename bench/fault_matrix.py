"""Print the fault matrix: each transient fault against a sandbox, with the rows the API
lists, the rows loaded, duplicates, requests, token requests and seconds.

    python -m bench.fault_matrix [--invoices 1600]

The same cases as `billwerk_dagster_tests/test_faults.py`, run the same way (in-process
Dagster `materialize` of the snapshots and then the whole range into a fresh DuckDB).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from dagster import DagsterInstance

from billwerk_dagster.billwerk.endpoints import ENDPOINTS, WINDOWED_ENDPOINTS
from billwerk_dagster.orchestration.settings import Settings
from billwerk_dagster.sandbox import Sandbox, generate
from billwerk_dagster_tests.conftest import Project, billwerk_for
from billwerk_dagster_tests.fault_cases import TRANSIENT_FAULTS, FaultCase

START = date(2024, 1, 1)
DAYS = 40
LAST = "2024-02-09"
WINDOW = ("2024-01-01T00:00:00.0000000Z", f"{LAST}T23:59:59.9999999Z")


def _listed(sandbox: Sandbox) -> int:
    return sum(
        len(sandbox.ids(name, *WINDOW) if e in WINDOWED_ENDPOINTS else sandbox.ids(name))
        for name, e in ENDPOINTS.items()
    )


def run_case(case: FaultCase, invoices: int, folder: Path) -> str:
    data = generate(seed=7, start=START, days=DAYS, invoices=invoices, burst=620)
    settings = Settings(
        start_date=START,
        destination="duckdb",
        duckdb_path=folder / "warehouse.duckdb",
        pipelines_dir=folder / "pipelines",
    )
    with Sandbox(data, fault_seed=2) as sandbox, DagsterInstance.ephemeral() as instance:
        expected = _listed(sandbox)
        rule = case.arm(sandbox)
        project = Project(
            settings, billwerk_for(sandbox, read_timeout_seconds=1.0, page_size=100), instance
        )
        started = time.monotonic()
        project.load_snapshots()
        project.load_days(START.isoformat(), LAST)
        seconds = time.monotonic() - started
        stats = sandbox.stats
        after = _listed(sandbox)

    ids = [i for name in ENDPOINTS for i in project.ids(name)]
    duplicates = len(ids) - len(set(ids))
    rows = f"{expected}" if after == expected else f"{expected}..{after}"
    fired = getattr(rule, "fired", "-")
    return (
        f"| {case.name} ({fired} fired) | {case.rate} | {rows} | {len(ids)} | {duplicates} | "
        f"{stats.api_requests} | {stats.token_requests} | {seconds:.1f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--invoices", type=int, default=1600)
    args = parser.parse_args(argv)

    columns = (
        "fault | rate | rows expected | rows loaded | duplicates | requests | tokens | seconds"
    )
    print(f"| {columns} |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for case in TRANSIENT_FAULTS:
        with tempfile.TemporaryDirectory() as folder:
            print(run_case(case, args.invoices, Path(folder)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
