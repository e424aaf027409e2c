"""The Dagster CLI as a user types it, with a fresh empty DAGSTER_HOME, the default
multiprocess executor, an empty HOME (nothing in ~/.dlt) and dlt's data folder pointed
elsewhere: each asset alone, both pairs, everything at once with no DuckDB lock error, and
a non-zero exit when a step fails. The sandbox runs as its own process, as in the demo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from billwerk_dagster.billwerk.endpoints import ENDPOINTS
from billwerk_dagster.sandbox import SandboxClient
from billwerk_dagster_tests.processes import (
    cli_environment,
    finish,
    materialize,
    sandbox_process,
    warehouse_rows,
)

RANGE = "2024-01-01...2024-03-30"  # the range: the sandbox's 90 days


@pytest.fixture(scope="module")
def sandbox_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("sandbox")
    sizes = ["--days", "90", "--invoices", "2600", "--customers", "80", "--contracts", "100"]
    with sandbox_process(folder, *sizes, "--orders", "300") as url:
        yield url


def _loaded_ids(tmp_path: Path, table: str) -> list[str]:
    return [str(row[0]) for row in warehouse_rows(tmp_path, f"select id from billwerk.{table}")]


def test_each_asset_alone_then_both_pairs_all_at_once(tmp_path: Path, sandbox_url: str) -> None:
    env = cli_environment(tmp_path, sandbox_url)

    # The first command alone: Dagster's SQLite storage in a fresh DAGSTER_HOME cannot be
    # created by several processes at once. Everything after that runs concurrently.
    singles = finish([materialize(env, "billwerk/customers")])
    singles += finish(
        [
            materialize(env, "billwerk/contracts"),
            materialize(env, "billwerk/invoices", "--partition", "2024-01-31"),
            materialize(env, "billwerk/orders", "--partition", "2024-02-01"),
        ]
    )
    for code, output in singles:
        assert code == 0, output[-3000:]

    pairs = finish(
        [
            materialize(env, "billwerk/customers,billwerk/contracts"),
            materialize(env, "billwerk/invoices,billwerk/orders", "--partition-range", RANGE),
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
    env = cli_environment(tmp_path, sandbox_url, secret="not-the-sandbox-secret")

    [(code, output)] = finish([materialize(env, "billwerk/customers")])

    assert code != 0
    assert "check BILLWERK_CLIENT_ID and BILLWERK_CLIENT_SECRET" in output
    assert "not-the-sandbox-secret" not in output
