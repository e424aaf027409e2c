"""The daily schedule: the range one tick requests, the settings it is built from, the
schedules, sensor and jobs the definitions hold, and the run a tick launches, executed
against the sandbox: snapshots first, then every day of the range in one run, with the
asset checks in the same run."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    Definitions,
    RunRequest,
    build_schedule_context,
)

from billwerk_dagster.billwerk.endpoints import (
    ENDPOINTS,
    INVOICES,
    SNAPSHOT_ENDPOINTS,
)
from billwerk_dagster.billwerk.errors import BillwerkConfigError
from billwerk_dagster.billwerk.window import Window
from billwerk_dagster.orchestration.assets import asset_key
from billwerk_dagster.orchestration.automation_settings import AutomationSettings
from billwerk_dagster.orchestration.definitions import build_definitions
from billwerk_dagster.orchestration.jobs import DAILY_JOB, FRESHNESS_JOB, NEW_INVOICES_JOB
from billwerk_dagster.orchestration.schedules import DAILY_SCHEDULE, FRESHNESS_SCHEDULE
from billwerk_dagster.orchestration.sensors import SENSOR_NAME
from billwerk_dagster.orchestration.settings import Settings
from billwerk_dagster.sandbox import Sandbox
from billwerk_dagster_tests.conftest import Project, billwerk_for


def _defs(settings: Settings, automation: AutomationSettings | None = None) -> Definitions:
    return build_definitions(settings, automation=automation or AutomationSettings())


def _tick(defs: Definitions, at: datetime) -> list[RunRequest]:
    schedule = defs.resolve_schedule_def(DAILY_SCHEDULE)
    with build_schedule_context(scheduled_execution_time=at) as context:
        return list(schedule.evaluate_tick(context).run_requests or [])


def test_a_tick_requests_one_run_over_yesterday_and_seven_days_before(
    settings: Settings,
) -> None:
    (request,) = _tick(_defs(settings), datetime(2024, 3, 10, 2, 0, tzinfo=UTC))

    assert request.partition_key_range is not None
    assert request.partition_key_range.start == "2024-03-02"
    assert request.partition_key_range.end == "2024-03-09"
    assert request.asset_selection is None  # the whole job: snapshots and windowed assets
    assert request.run_key == f"{DAILY_SCHEDULE}:2024-03-10T02:00"


def test_schedule_is_daily_at_two_utc_and_running_by_default(settings: Settings) -> None:
    defs = _defs(settings)
    schedule = defs.resolve_schedule_def(DAILY_SCHEDULE)
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.job_name == DAILY_JOB
    assert schedule.default_status.value == "RUNNING"
    assert defs.resolve_schedule_def(FRESHNESS_SCHEDULE).default_status.value == "RUNNING"


def test_cron_and_lookback_come_from_the_environment(settings: Settings) -> None:
    automation = AutomationSettings.from_env(
        {"BILLWERK_SCHEDULE_CRON": "30 5 * * 1-5", "BILLWERK_LOOKBACK_DAYS": "2"}
    )
    defs = _defs(settings, automation)
    assert defs.resolve_schedule_def(DAILY_SCHEDULE).cron_schedule == "30 5 * * 1-5"

    (request,) = _tick(defs, datetime(2024, 3, 11, 5, 30, tzinfo=UTC))
    assert request.partition_key_range is not None
    assert (request.partition_key_range.start, request.partition_key_range.end) == (
        "2024-03-08",
        "2024-03-10",
    )


def test_the_range_stops_at_the_start_date(settings: Settings) -> None:
    (request,) = _tick(_defs(settings), datetime(2024, 1, 4, 2, 0, tzinfo=UTC))
    assert request.partition_key_range is not None
    assert request.partition_key_range.start == settings.start_date.isoformat()
    assert request.partition_key_range.end == "2024-01-03"


def test_on_the_start_date_only_the_snapshots_are_refreshed(settings: Settings) -> None:
    start = settings.start_date
    (request,) = _tick(_defs(settings), datetime(start.year, start.month, start.day, 2, tzinfo=UTC))
    assert request.partition_key_range is None
    assert set(request.asset_selection or []) == {asset_key(e) for e in SNAPSHOT_ENDPOINTS}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BILLWERK_SCHEDULE_CRON", "daily at two", r"BILLWERK_SCHEDULE_CRON must be a cron"),
        ("BILLWERK_LOOKBACK_DAYS", "-1", r"BILLWERK_LOOKBACK_DAYS must be between 0 and"),
        ("BILLWERK_LOOKBACK_DAYS", "seven", r"BILLWERK_LOOKBACK_DAYS must be a whole number"),
        ("BILLWERK_SENSOR_INTERVAL_SECONDS", "5", r"BILLWERK_SENSOR_INTERVAL_SECONDS must be at"),
    ],
)
def test_bad_automation_settings_name_the_variable_to_fix(
    variable: str, value: str, message: str
) -> None:
    with pytest.raises(BillwerkConfigError, match=message):
        AutomationSettings.from_env({variable: value})


def test_the_scheduled_run_loads_snapshots_then_the_whole_range_and_checks_it(
    project: Project, sandbox: Sandbox
) -> None:
    defs = build_definitions(
        project.settings, billwerk=billwerk_for(sandbox), automation=AutomationSettings()
    )
    (request,) = _tick(defs, datetime(2024, 1, 20, 2, 0, tzinfo=UTC))
    job = defs.resolve_job_def(DAILY_JOB)

    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, tags=request.tags)
    assert result.success

    # One run: every snapshot once, every day of the range once.
    materialized = [(e.asset_key, e.partition) for e in result.get_asset_materialization_events()]
    for endpoint in SNAPSHOT_ENDPOINTS:
        assert (asset_key(endpoint), None) in materialized
    invoice_days = sorted(str(p) for k, p in materialized if k == asset_key(INVOICES))
    assert invoice_days == [f"2024-01-{day}" for day in range(12, 20)]

    # The snapshot step succeeded before the windowed step started.
    steps = [
        (e.event_type, e.step_key)
        for e in result.all_events
        if e.event_type in (DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS)
    ]
    assert steps.index((DagsterEventType.STEP_SUCCESS, "billwerk_snapshots")) < steps.index(
        (DagsterEventType.STEP_START, "billwerk_windowed")
    )

    window = Window(datetime(2024, 1, 12, tzinfo=UTC), datetime(2024, 1, 20, tzinfo=UTC))
    expected = sandbox.ids(INVOICES.name, window.date_from, window.date_to)
    assert set(project.ids(INVOICES.name)) == expected

    # Every check of every asset ran in that run and passed.
    evaluations = {
        (e.asset_key, e.check_name): e.passed for e in result.get_asset_check_evaluations()
    }
    assert len(evaluations) == sum(1 for _ in _all_check_keys(defs))
    assert all(evaluations.values()), evaluations


def _all_check_keys(defs: Definitions) -> list[tuple[AssetKey, str]]:
    graph = defs.resolve_asset_graph()
    keys = [(k.asset_key, k.name) for k in graph.asset_check_keys]
    assert {asset for asset, _ in keys} == {asset_key(e) for e in ENDPOINTS.values()}
    return keys


def test_definitions_hold_the_schedules_the_sensor_and_their_jobs(settings: Settings) -> None:
    defs = _defs(settings)
    repository = defs.get_repository_def()
    assert {s.name for s in repository.schedule_defs} == {DAILY_SCHEDULE, FRESHNESS_SCHEDULE}
    assert {s.name for s in repository.sensor_defs} == {SENSOR_NAME}
    named_jobs = {j.name for j in repository.get_all_jobs() if not j.name.startswith("__")}
    assert named_jobs == {DAILY_JOB, NEW_INVOICES_JOB, FRESHNESS_JOB}
    assert (
        defs.resolve_job_def(DAILY_JOB).partitions_def
        == defs.resolve_job_def(NEW_INVOICES_JOB).partitions_def
    )
