"""The definitions themselves: asset keys, dependencies, partitions, backfill policy and the
settings they are built from. Loading them needs no credentials and no network."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from dagster import AssetKey, BackfillPolicy, DailyPartitionsDefinition

from billwerk_dagster.billwerk.errors import BillwerkConfigError
from billwerk_dagster.orchestration.definitions import build_definitions
from billwerk_dagster.orchestration.resources import WarehouseResource
from billwerk_dagster.orchestration.settings import Settings, parse_start_date


def _key(name: str) -> AssetKey:
    return AssetKey(["billwerk", name])


@pytest.fixture
def graph(tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = Settings(
        start_date=date(2024, 1, 1),
        destination="duckdb",
        duckdb_path=tmp_path / "warehouse.duckdb",
        pipelines_dir=tmp_path / "pipelines",
    )
    return build_definitions(settings).resolve_asset_graph()


def test_asset_keys_are_exactly_the_four_endpoints(graph) -> None:  # type: ignore[no-untyped-def]
    assert set(graph.get_all_asset_keys()) == {
        _key("customers"),
        _key("contracts"),
        _key("invoices"),
        _key("orders"),
    }
    assert {graph.get(k).group_name for k in graph.get_all_asset_keys()} == {"billwerk"}


def test_dependencies_follow_the_foreign_keys(graph) -> None:  # type: ignore[no-untyped-def]
    assert graph.get(_key("invoices")).parent_keys == {_key("customers")}
    assert graph.get(_key("orders")).parent_keys == {_key("contracts")}
    assert graph.get(_key("customers")).parent_keys == set()
    assert graph.get(_key("contracts")).parent_keys == set()


def test_invoices_and_orders_are_daily_utc_with_single_run_backfills(graph) -> None:  # type: ignore[no-untyped-def]
    for name in ("invoices", "orders"):
        node = graph.get(_key(name))
        partitions = node.partitions_def
        assert isinstance(partitions, DailyPartitionsDefinition)
        assert partitions.timezone == "UTC"
        assert partitions.start.date() == date(2024, 1, 1)
        # Today's partition exists, so a day can be loaded while it is still going on.
        assert partitions.end_offset == 1
        assert node.backfill_policy == BackfillPolicy.single_run()
    for name in ("customers", "contracts"):
        assert graph.get(_key(name)).partitions_def is None


def test_every_asset_writes_through_the_warehouse_pool(graph) -> None:  # type: ignore[no-untyped-def]
    for key in graph.get_all_asset_keys():
        assert graph.get(key).pools == {"billwerk_warehouse"}


def test_definitions_load_without_credentials_or_network(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path / "home"),
        "BILLWERK_DATA_DIR": str(tmp_path / "data"),
        # An address that cannot resolve: loading must not try to reach it.
        "BILLWERK_BASE_URL": "https://billwerk.invalid",
    }
    code = (
        "from billwerk_dagster.definitions import defs;"
        "print(len(list(defs.resolve_asset_graph().get_all_asset_keys())))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4"
    assert not (tmp_path / "home" / ".dlt").exists()


def test_start_date_must_be_a_past_date() -> None:
    assert parse_start_date("2023-05-01") == date(2023, 5, 1)
    with pytest.raises(BillwerkConfigError, match=r"BILLWERK_START_DATE must be a date"):
        parse_start_date("01.05.2023")
    tomorrow = (date.today() + timedelta(days=2)).isoformat()
    with pytest.raises(BillwerkConfigError, match=r"BILLWERK_START_DATE .* lies in the future"):
        parse_start_date(tomorrow)


def test_settings_default_to_a_duckdb_file_not_named_like_the_dataset(tmp_path: Path) -> None:
    settings = Settings.from_env({"BILLWERK_DATA_DIR": str(tmp_path)})
    assert settings.destination == "duckdb"
    assert settings.duckdb_path == tmp_path / "warehouse.duckdb"
    assert settings.duckdb_path.stem != settings.dataset_name
    explicit = Settings.from_env({"BILLWERK_DUCKDB_PATH": str(tmp_path / "x" / "w.duckdb")})
    assert explicit.duckdb_path == tmp_path / "x" / "w.duckdb"


def test_runs_execute_in_process_unless_the_executor_setting_says_otherwise(
    tmp_path: Path,
) -> None:
    def executor(env: dict[str, str]) -> str:
        settings = Settings.from_env({"BILLWERK_DATA_DIR": str(tmp_path), **env})
        return build_definitions(settings).resolve_job_def("billwerk_daily").executor_def.name

    assert executor({}) == "in_process"
    assert executor({"BILLWERK_EXECUTOR": "multiprocess"}) == "multiprocess"
    with pytest.raises(BillwerkConfigError, match=r"BILLWERK_EXECUTOR must be one of"):
        Settings.from_env({"BILLWERK_EXECUTOR": "k8s"})


def test_duckdb_loads_under_a_memory_limit_that_the_setting_can_change(tmp_path: Path) -> None:
    def limit(env: dict[str, str]) -> str:
        settings = Settings.from_env({"BILLWERK_DATA_DIR": str(tmp_path), **env})
        pipeline = WarehouseResource.from_settings(settings).pipeline("limit_probe")
        with pipeline.sql_client() as sql:
            [(value,)] = sql.execute_sql("select current_setting('memory_limit')")
        return str(value)

    assert limit({}) == "30.5 MiB"  # 32MB as DuckDB reports it
    assert limit({"BILLWERK_DUCKDB_MEMORY_LIMIT": "1GB"}) == "953.6 MiB"
    with pytest.raises(BillwerkConfigError, match=r"BILLWERK_DUCKDB_MEMORY_LIMIT must be a size"):
        Settings.from_env({"BILLWERK_DUCKDB_MEMORY_LIMIT": "lots"})


def test_arrow_allocates_with_the_system_allocator_once_the_project_is_imported() -> None:
    # In a fresh process, as a run's worker imports the code location.
    probe = (
        "import billwerk_dagster.definitions, pyarrow; "
        "print(pyarrow.default_memory_pool().backend_name)"
    )
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    output = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    assert output.stdout.strip() == "system"
