"""Helpers for tests that run things as separate processes, the way a user does: the
sandbox via `python -m billwerk_dagster.sandbox` and `dagster asset materialize`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb

from billwerk_dagster.sandbox import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from billwerk_dagster.sandbox.control import sandbox_process

__all__ = ["cli_environment", "finish", "materialize", "sandbox_process", "warehouse_rows"]


def cli_environment(folder: Path, url: str, secret: str = DEFAULT_CLIENT_SECRET) -> dict[str, str]:
    """A clean environment: fresh DAGSTER_HOME, empty HOME, data under `folder`."""
    for name in ("home", "dagster_home"):
        (folder / name).mkdir(exist_ok=True)
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(folder / "home"),
        "DAGSTER_HOME": str(folder / "dagster_home"),
        "DLT_DATA_DIR": str(folder / "dlt_data_dir"),
        "BILLWERK_DATA_DIR": str(folder / "data"),
        "BILLWERK_BASE_URL": url,
        "BILLWERK_CLIENT_ID": DEFAULT_CLIENT_ID,
        "BILLWERK_CLIENT_SECRET": secret,
        "BILLWERK_START_DATE": "2024-01-01",
    }


def materialize(env: dict[str, str], selection: str, *extra: str) -> subprocess.Popen[str]:
    """`dagster asset materialize` in its own process group, so a test can kill it whole."""
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize",
        "-m", "billwerk_dagster.definitions", "--select", selection, *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish(runs: list[subprocess.Popen[str]]) -> list[tuple[int, str]]:
    """Wait for every run; their exit codes and outputs."""
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    return [(run.returncode, output) for run, output in zip(runs, outputs, strict=True)]


def warehouse_rows(folder: Path, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(folder / "data" / "warehouse.duckdb"), read_only=True) as db:
        return db.execute(sql).fetchall()
