"""A run killed for real (SIGKILL of the whole `dagster asset materialize` process group)
leaves the warehouse as it was and marks nothing materialized; the next run completes the
range exactly. Killed once while the sandbox holds a page (mid-extraction) and once as dlt
starts loading (mid-load). Then scans everything the runs wrote for the secret and tokens."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from billwerk_dagster.billwerk.endpoints import INVOICES, WINDOWED_ENDPOINTS
from billwerk_dagster.orchestration.assets import asset_key
from billwerk_dagster.sandbox import SandboxClient
from billwerk_dagster_tests.processes import (
    cli_environment,
    finish,
    materialize,
    sandbox_process,
    warehouse_rows,
)

FIRST_RANGE = "2024-01-01...2024-01-20"
SECOND_RANGE = "2024-01-21...2024-02-09"
WINDOWED = ",".join(asset_key(e).to_user_string() for e in WINDOWED_ENDPOINTS)
SECRET = "kill-test-s3cret-81bd"


@pytest.fixture(scope="module")
def sandbox_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("sandbox")
    sizes = ["--days", "40", "--invoices", "6000", "--burst", "600", "--orders", "800"]
    with sandbox_process(folder, *sizes, "--client-secret", SECRET) as url:
        yield url


def _counts(folder: Path) -> dict[str, int]:
    tables = ("invoices", "invoices__item_list", "orders", "orders__line_items")
    return {
        t: int(warehouse_rows(folder, f"select count(*) from billwerk.{t}")[0][0]) for t in tables
    }  # type: ignore[arg-type]


def _materialized_days(folder: Path, key: AssetKey) -> set[str]:
    with DagsterInstance.from_config(str(folder / "dagster_home")) as instance:
        return set(instance.get_materialized_partitions(key))


def _kill_when(run: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        assert run.poll() is None, "the run finished before the kill point"
        assert time.monotonic() < deadline, "the kill point never came"
        time.sleep(0.01)
    os.killpg(run.pid, signal.SIGKILL)
    run.communicate(timeout=60)


def _load_started(folder: Path) -> Callable[[], bool]:
    normalized = folder / "data" / "dlt_pipelines" / "billwerk_windowed" / "load" / "normalized"
    return lambda: normalized.exists() and any(normalized.iterdir())


@pytest.mark.parametrize("kill_point", ["mid-extraction", "mid-load"])
def test_a_killed_run_leaves_the_warehouse_intact_and_the_next_run_is_exact(
    kill_point: str, tmp_path: Path, sandbox_url: str
) -> None:
    sandbox = SandboxClient(sandbox_url)
    env = cli_environment(tmp_path, sandbox_url, secret=SECRET)
    [(code, output)] = finish([materialize(env, WINDOWED, "--partition-range", FIRST_RANGE)])
    assert code == 0, output[-3000:]
    before = _counts(tmp_path)
    days_before = _materialized_days(tmp_path, asset_key(INVOICES))

    run = materialize(env, WINDOWED, "--partition-range", SECOND_RANGE)
    if kill_point == "mid-extraction":
        sandbox.fault("hold", endpoint=INVOICES.name, after=2, timeout=60)
        _kill_when(run, lambda: sandbox.faults()["holding"] > 0)
        sandbox.release()
    else:
        _kill_when(run, _load_started(tmp_path))

    assert _counts(tmp_path) == before
    assert _materialized_days(tmp_path, asset_key(INVOICES)) == days_before

    [(code, rerun_output)] = finish([materialize(env, WINDOWED, "--partition-range", SECOND_RANGE)])
    assert code == 0, rerun_output[-3000:]
    loaded = [str(r[0]) for r in warehouse_rows(tmp_path, "select id from billwerk.invoices")]
    expected = sandbox.ids(INVOICES.name, "2024-01-01", "2024-02-09T23:59:59.9999999Z")
    assert len(loaded) == len(set(loaded))
    assert set(loaded) == set(expected)
    _assert_no_secret_or_token(tmp_path, [output, rerun_output], sandbox.tokens())


def _assert_no_secret_or_token(folder: Path, outputs: list[str], tokens: list[str]) -> None:
    """Nothing the runs printed or wrote (DAGSTER_HOME with its event log, dlt's working
    folders with state and traces, the DuckDB file, even what a killed run left) holds the
    secret or any token the sandbox issued."""
    needles = [SECRET, *tokens]
    assert len(needles) > 1
    for output in outputs:
        assert not any(needle in output for needle in needles)
    written = [p for p in folder.rglob("*") if p.is_file()]
    assert any(p.suffix == ".duckdb" for p in written)
    assert any("dagster_home" in p.parts for p in written)
    for path in written:
        content = path.read_bytes()
        assert not any(n.encode() in content for n in needles), f"{path} holds a secret"
