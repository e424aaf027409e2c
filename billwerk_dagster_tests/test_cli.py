"""The Dagster CLI as a user types it, with a fresh empty DAGSTER_HOME, the default
multiprocess executor, an empty HOME (nothing in ~/.dlt) and dlt's data folder pointed
elsewhere: each asset alone, both pairs, everything at once with no DuckDB lock error, and
a non-zero exit when a step fails. The sandbox runs as its own process, as in the demo."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from billwerk_dagster.billwerk.endpoints import ENDPOINTS
from billwerk_dagster.sandbox import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SandboxClient

RANGE = "2024-01-01...2024-03-30"  # the range: the sandbox's 90 days


@pytest.fixture(scope="module")
def sandbox_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port_file = tmp_path_factory.mktemp("sandbox") / "port"
    command = [
        sys.executable, "-m", "billwerk_dagster.sandbox", "--port", "0",
        "--port-file", str(port_file), "--days", "90", "--invoices", "2600",
        "--customers", "80", "--contracts", "100", "--orders", "300", "--log-level", "WARNING",
    ]  # fmt: skip
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            assert server.poll() is None and time.monotonic() < deadline, "sandbox did not start"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port_file.read_text().strip()}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def _environment(tmp_path: Path, url: str, secret: str = DEFAULT_CLIENT_SECRET) -> dict[str, str]:
    home = tmp_path / "home"
    dagster_home = tmp_path / "dagster_home"
    home.mkdir()
    dagster_home.mkdir()
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "DLT_DATA_DIR": str(tmp_path / "dlt_data_dir"),
        "BILLWERK_DATA_DIR": str(tmp_path / "data"),
        "BILLWERK_BASE_URL": url,
        "BILLWERK_CLIENT_ID": DEFAULT_CLIENT_ID,
        "BILLWERK_CLIENT_SECRET": secret,
        "BILLWERK_START_DATE": "2024-01-01",
    }


def _materialize(env: dict[str, str], selection: str, *extra: str) -> subprocess.Popen[str]:
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize",
        "-m", "billwerk_dagster.definitions", "--select", selection, *extra,
    ]  # fmt: skip
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def _finish(runs: list[subprocess.Popen[str]]) -> list[tuple[int, str]]:
    outputs = [run.communicate(timeout=300)[0] for run in runs]
    return [(run.returncode, output) for run, output in zip(runs, outputs, strict=True)]


def _loaded_ids(tmp_path: Path, table: str) -> list[str]:
    path = tmp_path / "data" / "warehouse.duckdb"
    with duckdb.connect(str(path), read_only=True) as db:
        return [row[0] for row in db.execute(f"select id from billwerk.{table}").fetchall()]


def test_each_asset_alone_then_both_pairs_all_at_once(tmp_path: Path, sandbox_url: str) -> None:
    env = _environment(tmp_path, sandbox_url)

    # The first command alone: Dagster's SQLite storage in a fresh DAGSTER_HOME cannot be
    # created by several processes at once. Everything after that runs concurrently.
    singles = _finish([_materialize(env, "billwerk/customers")])
    singles += _finish(
        [
            _materialize(env, "billwerk/contracts"),
            _materialize(env, "billwerk/invoices", "--partition", "2024-01-31"),
            _materialize(env, "billwerk/orders", "--partition", "2024-02-01"),
        ]
    )
    for code, output in singles:
        assert code == 0, output[-3000:]

    pairs = _finish(
        [
            _materialize(env, "billwerk/customers,billwerk/contracts"),
            _materialize(env, "billwerk/invoices,billwerk/orders", "--partition-range", RANGE),
        ]
    )
    for code, output in pairs:
        assert code == 0, output[-3000:]

    sandbox = SandboxClient(sandbox_url)
    for name in ENDPOINTS:
        loaded = _loaded_ids(tmp_path, name)
        assert len(loaded) == len(set(loaded)), name
        assert set(loaded) == set(sandbox.ids(name)), name
    assert not (tmp_path / "home" / ".dlt").exists()
    assert not (tmp_path / "dlt_data_dir").exists()


def test_a_failing_step_makes_the_command_exit_non_zero(tmp_path: Path, sandbox_url: str) -> None:
    env = _environment(tmp_path, sandbox_url, secret="not-the-sandbox-secret")

    [(code, output)] = _finish([_materialize(env, "billwerk/customers")])

    assert code != 0
    assert "check BILLWERK_CLIENT_ID and BILLWERK_CLIENT_SECRET" in output
    assert "not-the-sandbox-secret" not in output
