"""The asset checks on a real load from the sandbox: foreign keys, unique Ids and freshness
pass on good data and fail, with counts and samples, on orphans (a customer or contract
removed upstream and the snapshot reloaded) and on duplicates; a warehouse never loaded
fails every check with what to materialize; checks run on their own, without loading, and
wait for a writer that holds the warehouse lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb
import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetSelection,
    materialize,
)
from dlt.common.normalizers.naming.snake_case import NamingConvention

from billwerk_dagster.billwerk.endpoints import ENDPOINTS, PRIMARY_KEY, Endpoint
from billwerk_dagster.orchestration.automation_settings import AutomationSettings
from billwerk_dagster.orchestration.checks import (
    FRESHNESS_CHECK,
    UNIQUE_CHECK,
    build_freshness_checks,
    expected_update_since,
    foreign_key_check_name,
)
from billwerk_dagster.orchestration.definitions import build_definitions
from billwerk_dagster.orchestration.resources import WarehouseResource
from billwerk_dagster.sandbox import Sandbox
from billwerk_dagster_tests.conftest import DAYS, START, Project

LAST_DAY = (START + timedelta(days=DAYS - 1)).isoformat()
WITH_FOREIGN_KEYS = [e for e in ENDPOINTS.values() if e.references is not None]

Results = dict[tuple[str, str], AssetCheckEvaluation]


def _run_checks(project: Project, checks: Sequence[AssetChecksDefinition] = ()) -> Results:
    """Every check (or `checks`) on its own: a run that materializes nothing."""
    defs = build_definitions(project.settings, project.billwerk, AutomationSettings())
    chosen: list[Any] = list(checks) or list(defs.asset_checks or [])
    assets: list[Any] = list(defs.assets or [])
    result = materialize(
        [*assets, *chosen],
        selection=AssetSelection.checks(*chosen),
        resources=defs.resources,
        instance=project.instance,
        raise_on_error=False,
    )
    evaluations = result.get_asset_check_evaluations()
    # ERROR checks are blocking: one that fails fails the run (and the CLI's exit code).
    failed = [e for e in evaluations if not e.passed and e.severity == AssetCheckSeverity.ERROR]
    assert result.success == (not failed)
    assert result.get_asset_materialization_events() == []
    return {(e.asset_key.path[-1], e.check_name): e for e in evaluations}


def _load_everything(project: Project) -> None:
    project.load_snapshots()
    project.load_days(START.isoformat(), LAST_DAY)


def _meta(evaluation: AssetCheckEvaluation, key: str) -> Any:
    return evaluation.metadata[key].value


def test_every_check_passes_on_a_good_load(project: Project) -> None:
    _load_everything(project)

    results = _run_checks(project)

    expected = {(e.name, UNIQUE_CHECK) for e in ENDPOINTS.values()}
    expected |= {(e.name, FRESHNESS_CHECK) for e in ENDPOINTS.values()}
    expected |= {(e.name, str(foreign_key_check_name(e))) for e in WITH_FOREIGN_KEYS}
    assert set(results) == expected
    failed = {key: r.description for key, r in results.items() if not r.passed}
    assert failed == {}
    for endpoint in WITH_FOREIGN_KEYS:
        check = results[(endpoint.name, str(foreign_key_check_name(endpoint)))]
        assert _meta(check, "orphan_count") == 0
        assert _meta(check, "checked_rows") == len(project.ids(endpoint.name)) > 0


@pytest.mark.parametrize("child", WITH_FOREIGN_KEYS, ids=lambda e: e.name)
def test_a_parent_removed_upstream_fails_the_foreign_key_check_with_the_orphan_count(
    project: Project, sandbox: Sandbox, child: Endpoint
) -> None:
    assert child.references is not None
    parent, field = ENDPOINTS[child.references[0]], child.references[1]
    _load_everything(project)
    column = NamingConvention().normalize_identifier(field)
    ((gone, orphans),) = project.rows(
        f"select {column}, count(*) from billwerk.{child.name} "
        "group by 1 order by 2 desc, 1 limit 1"
    )

    assert sandbox.remove(parent.name, gone)
    project.load_snapshots()
    results = _run_checks(project)

    check = results[(child.name, str(foreign_key_check_name(child)))]
    assert not check.passed
    assert check.severity == AssetCheckSeverity.ERROR
    assert _meta(check, "orphan_count") == orphans
    assert _meta(check, "missing_parent_count") == 1
    sample = _meta(check, "orphan_sample")
    assert 0 < len(sample) <= 10
    assert {row[field] for row in sample} == {gone}
    assert f"{orphans} {child.name} point to 1 {field}" in (check.description or "")
    # Only that check fails.
    assert [key for key, r in results.items() if not r.passed] == [
        (child.name, str(foreign_key_check_name(child)))
    ]


def test_a_duplicated_id_fails_the_unique_check(project: Project) -> None:
    _load_everything(project)
    endpoint = next(iter(ENDPOINTS.values()))
    with duckdb.connect(str(project.settings.duckdb_path)) as db:
        (twice,) = db.execute(
            f"insert into billwerk.{endpoint.name} select * from billwerk.{endpoint.name} "
            f"order by {PRIMARY_KEY.lower()} limit 1 returning {PRIMARY_KEY.lower()}"
        ).fetchone() or ("",)

    results = _run_checks(project)

    check = results[(endpoint.name, UNIQUE_CHECK)]
    assert not check.passed
    assert _meta(check, "duplicate_rows") == 1
    assert _meta(check, "duplicate_sample") == [{"id": twice, "rows": 2}]
    assert all(r.passed for key, r in results.items() if key != (endpoint.name, UNIQUE_CHECK))


def test_checks_on_a_warehouse_never_loaded_say_what_to_materialize(project: Project) -> None:
    results = _run_checks(project)

    assert results and not any(r.passed for r in results.values())
    assert {r.severity for r in results.values()} == {AssetCheckSeverity.WARN}
    for (name, check), result in results.items():
        if check == FRESHNESS_CHECK:
            assert "was never materialized" in (result.description or "")
        else:
            assert f"Table {name} does not exist yet: materialize billwerk/{name} first." == (
                result.description
            )


def test_a_missing_parent_table_fails_the_foreign_key_check_naming_the_parent(
    project: Project,
) -> None:
    project.load_days(START.isoformat(), LAST_DAY)  # the windowed assets only

    results = _run_checks(project)

    for child in WITH_FOREIGN_KEYS:
        assert child.references is not None
        parent = child.references[0]
        check = results[(child.name, str(foreign_key_check_name(child)))]
        assert not check.passed
        assert f"Table {parent} does not exist yet" in (check.description or "")


def test_freshness_fails_once_the_next_scheduled_run_is_overdue(project: Project) -> None:
    _load_everything(project)
    settings = AutomationSettings(schedule_cron="0 2 * * *", freshness_grace_hours=3)
    now = datetime.now(UTC)

    fresh = _run_checks(project, [build_freshness_checks(settings, clock=lambda: now)])
    two_days_on = build_freshness_checks(settings, clock=lambda: now + timedelta(days=2))
    stale = _run_checks(project, [two_days_on])

    assert all(r.passed for r in fresh.values())
    assert stale and not any(r.passed for r in stale.values())
    for result in stale.values():
        assert result.severity == AssetCheckSeverity.WARN
        assert "before the run due at" in (result.description or "")
        assert _meta(result, "age_hours") >= 47


def test_freshness_allows_the_grace_for_the_run_after_each_tick() -> None:
    cron, grace = "0 2 * * *", timedelta(hours=3)
    at = lambda hour: datetime(2024, 3, 10, hour, tzinfo=UTC)  # noqa: E731

    # Until 05:00 the 02:00 run may still be going: yesterday's run is what counts.
    assert expected_update_since(cron, at(4), grace) == datetime(2024, 3, 9, 2, tzinfo=UTC)
    assert expected_update_since(cron, at(5), grace) == at(2)
    assert expected_update_since(cron, at(23), grace) == at(2)


def test_checks_wait_while_a_writer_holds_the_warehouse_lock(project: Project) -> None:
    _load_everything(project)
    warehouse = WarehouseResource.from_settings(project.settings)
    finished = threading.Event()

    def check_everything() -> None:
        _run_checks(project)
        finished.set()

    with warehouse.writer_lock():
        reader = threading.Thread(target=check_everything)
        reader.start()
        time.sleep(1.0)
        assert not finished.is_set()
    reader.join(timeout=60)
    assert finished.is_set()
