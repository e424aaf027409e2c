"""The whole pipeline against the local sandbox over real HTTP into DuckDB: every Id once,
child tables complete and linked, exact timestamps and money, month-end bursts, re-runs
that add nothing, snapshots that drop what Billwerk no longer lists, and the metadata each
materialization reports."""

from __future__ import annotations

import json
import logging
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from dagster import DagsterInstance

from billwerk_dagster.billwerk.endpoints import ENDPOINTS, INVOICES
from billwerk_dagster.billwerk.window import Window
from billwerk_dagster.orchestration.assets import asset_key
from billwerk_dagster.sandbox import Sandbox, SandboxData
from billwerk_dagster_tests.conftest import DAYS, START, Project, billwerk_for

LAST_DAY = (START + timedelta(days=DAYS - 1)).isoformat()


def _day_window(day: date) -> Window:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return Window(start, start + timedelta(days=1))


def _records(data: SandboxData, name: str) -> list[dict[str, Any]]:
    return [json.loads(json.dumps(r), parse_float=Decimal) for r in data.records(name)]


def _orphans(project: Project, child: str, parent: str) -> int:
    return project.rows(
        f"select count(*) from billwerk.{child} c "
        f"left join billwerk.{parent} p on c._dlt_parent_id = p._dlt_id where p._dlt_id is null"
    )[0][0]


def test_full_load_holds_every_id_exactly_once(project: Project, sandbox: Sandbox) -> None:
    project.load_snapshots()
    project.load_days(START.isoformat(), LAST_DAY)

    for name in ENDPOINTS:
        loaded = project.ids(name)
        assert Counter(loaded).most_common(1)[0][1] == 1, f"{name} has duplicates"
        assert set(loaded) == sandbox.ids(name), name


def test_child_tables_are_complete_and_linked_to_their_parents(
    project: Project, sandbox: Sandbox, sandbox_data: SandboxData
) -> None:
    project.load_snapshots()
    project.load_days(START.isoformat(), LAST_DAY)

    for endpoint in ENDPOINTS.values():
        for field in endpoint.nested_lists:
            child = f"{endpoint.name}__{_snake(field)}"
            expected = sum(len(r.get(field) or []) for r in _records(sandbox_data, endpoint.name))
            assert project.rows(f"select count(*) from billwerk.{child}")[0][0] == expected
            assert _orphans(project, child, endpoint.name) == 0
    json_columns = project.rows(
        "select table_name, column_name from information_schema.columns "
        "where table_schema = 'billwerk' and data_type = 'JSON'"
    )
    assert json_columns == []


def test_timestamps_are_truncated_to_microseconds_at_the_last_tick_of_a_day(
    project: Project, sandbox_data: SandboxData
) -> None:
    edges = sandbox_data.edges
    project.load_days(edges.last_tick_day.isoformat())

    loaded = project.rows(
        "select strftime(created at time zone 'UTC', '%Y-%m-%dT%H:%M:%S.%f') from billwerk.invoices"
    )
    stamps = {row[0] for row in loaded}
    # 23:59:59.9999999 keeps six digits; rounding would have moved it into the next day.
    assert edges.last_tick_created[:26] in stamps
    assert edges.first_tick_created[:26] not in stamps
    assert len(loaded) == len(sandbox_data.ids(INVOICES.name, *_bounds(edges.last_tick_day)))
    column_types = dict(
        project.rows(
            "select column_name, data_type from information_schema.columns "
            "where table_schema = 'billwerk' and table_name = 'invoices'"
        )
    )
    assert column_types["created"] == "TIMESTAMP WITH TIME ZONE"


def test_money_lands_as_decimal_equal_to_the_cent(
    project: Project, sandbox_data: SandboxData
) -> None:
    project.load_days(START.isoformat(), LAST_DAY)

    source = {r["Id"]: r for r in _records(sandbox_data, INVOICES.name)}
    for invoice_id, net, vat, gross in project.rows(
        "select id, total_net, total_vat, total_gross from billwerk.invoices"
    ):
        record = source[invoice_id]
        assert (net, vat, gross) == (record["TotalNet"], record["TotalVat"], record["TotalGross"])
    money_types = project.rows(
        "select distinct data_type from information_schema.columns where table_schema = "
        "'billwerk' and column_name in ('total_gross', 'balance', 'price_per_unit', 'total')"
    )
    assert all(t.startswith("DECIMAL") for (t,) in money_types), money_types


def test_a_month_end_burst_larger_than_a_page_loads_completely(
    project: Project, sandbox: Sandbox, sandbox_data: SandboxData
) -> None:
    edges = sandbox_data.edges
    burst_day = edges.burst_days[0]
    assert edges.burst_size > 500

    result = project.load_days(burst_day.isoformat())

    loaded = project.ids(INVOICES.name)
    assert len(loaded) == len(set(loaded))
    assert set(loaded) == sandbox.ids(INVOICES.name, *_bounds(burst_day))
    burst = project.rows(
        "select count(*) from billwerk.invoices where created = ?::timestamptz",
        [edges.burst_created[0][:26] + "Z"],
    )[0][0]
    assert burst == edges.burst_size
    metadata = result.asset_materializations_for_node("billwerk_windowed")[0].metadata
    assert metadata["pages"].value >= 2


def test_a_range_run_writes_lean_metadata_per_partition(project: Project) -> None:
    # Every partition of a range run gets its own event with the whole metadata: the
    # child tables are named there, their column schemas are not repeated.
    result = project.load_days(START.isoformat(), (START + timedelta(days=2)).isoformat())

    events = result.asset_materializations_for_node("billwerk_windowed")
    invoices = [e for e in events if e.asset_key.path[-1] == INVOICES.name]
    assert sorted(str(e.partition) for e in invoices) == [
        (START + timedelta(days=n)).isoformat() for n in range(3)
    ]
    for event in invoices:
        metadata = event.metadata
        assert metadata["child_tables"].value == "invoices__item_list"
        assert "dagster/column_schema" in metadata
        assert not any(key.startswith("invoices__") for key in metadata)
        assert "jobs" not in metadata


def test_rerunning_a_range_adds_no_duplicates_and_leaves_no_orphans(
    project: Project, sandbox_data: SandboxData
) -> None:
    first, last = START.isoformat(), (START + timedelta(days=9)).isoformat()
    project.load_days(first, last)
    counts = _table_counts(project)

    project.load_days(first, last)
    project.load_days(first)  # one day of the range again, on its own

    assert _table_counts(project) == counts
    assert _orphans(project, "invoices__item_list", "invoices") == 0
    assert _orphans(project, "orders__line_items", "orders") == 0


def test_a_customer_removed_upstream_is_gone_after_the_next_snapshot(
    project: Project, sandbox: Sandbox
) -> None:
    project.load_snapshots()
    removed = sorted(sandbox.ids("customers"))[3]
    assert removed in project.ids("customers")

    sandbox.remove("customers", removed)
    project.load_snapshots()

    assert removed not in project.ids("customers")
    assert set(project.ids("customers")) == sandbox.ids("customers")


def test_a_failed_snapshot_leaves_the_previous_one_whole(
    project: Project, sandbox: Sandbox
) -> None:
    project.load_snapshots()
    before = _table_counts(project)

    sandbox.faults.status(404, endpoint="contracts")
    result = project.load_snapshots_allowing_failure()

    assert not result.success
    assert _table_counts(project) == before


def test_each_materialization_reports_rows_window_pages_and_requests(
    project: Project, sandbox: Sandbox
) -> None:
    result = project.load_days("2024-01-02", "2024-01-03")

    by_asset = {
        m.asset_key: m.metadata for m in result.asset_materializations_for_node("billwerk_windowed")
    }
    invoices = by_asset[asset_key(INVOICES)]
    expected = sandbox.ids(INVOICES.name, "2024-01-02", "2024-01-03T23:59:59.9999999Z")
    assert invoices["rows_loaded"].value == len(expected)
    assert invoices["window"].value == (
        "2024-01-02T00:00:00.0000000Z..2024-01-04T00:00:00.0000000Z"
    )
    assert invoices["pages"].value >= 1
    assert invoices["requests"].value >= invoices["pages"].value


def test_running_without_credentials_names_the_missing_variable(
    settings: Any, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagster import materialize

    from billwerk_dagster.orchestration.definitions import build_definitions

    monkeypatch.delenv("BILLWERK_CLIENT_ID", raising=False)
    monkeypatch.setenv("BILLWERK_CLIENT_SECRET", "x")
    monkeypatch.setenv("BILLWERK_BASE_URL", sandbox.url)
    defs = build_definitions(settings)

    with pytest.raises(Exception, match="BILLWERK_CLIENT_ID"):
        materialize(
            list(defs.assets or []),  # type: ignore[arg-type]
            resources=defs.resources,
            selection=["billwerk/customers"],
        )
    assert sandbox.stats.token_requests == 0


def _bounds(day: date) -> tuple[str, str]:
    window = _day_window(day)
    return window.date_from, window.date_to


def _snake(field: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in field).lstrip("_")


def _table_counts(project: Project) -> dict[str, int]:
    tables = project.rows(
        "select table_name from information_schema.tables where table_schema = 'billwerk' "
        "and table_name not like '\\_dlt%' escape '\\'"
    )
    return {t: project.rows(f"select count(*) from billwerk.{t}")[0][0] for (t,) in tables}


def test_no_secret_or_token_reaches_files_logs_or_metadata(
    settings: Any, sandbox_data: SandboxData, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "distinctive-s3cret-7f3a9c"
    caplog.set_level(logging.DEBUG)
    with (
        Sandbox(sandbox_data, client_secret=secret) as sandbox,
        DagsterInstance.ephemeral() as instance,
    ):
        project = Project(settings, billwerk_for(sandbox, client_secret=secret), instance)
        results = [project.load_snapshots(), project.load_days(START.isoformat(), LAST_DAY)]
        tokens = sandbox.stats.tokens_issued

    assert tokens
    needles = [secret, *tokens]
    texts = [caplog.text] + [repr(e) for r in results for e in r.all_events]
    for needle in needles:
        assert not any(needle in text for text in texts)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert not any(n.encode() in content for n in needles), path


def test_materializing_one_asset_of_a_pair_fetches_only_its_endpoint(
    project: Project, sandbox: Sandbox
) -> None:
    project.materialize([asset_key(INVOICES)], START.isoformat())

    assert sandbox.stats.requests.get("orders", 0) == 0
    assert sandbox.stats.requests[INVOICES.name] >= 1
