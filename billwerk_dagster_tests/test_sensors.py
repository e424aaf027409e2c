"""The new-invoices sensor against the local sandbox over real HTTP: its first look, quiet
ticks, runs for the days new invoices fall in (today's included), a cursor that advances,
a bounded catch-up, and skips (never exceptions) when Billwerk is down, refuses the
credentials or answers errors. Nothing secret reaches a skip reason or a log line."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from dagster import SensorDefinition, build_sensor_context
from dagster._core.definitions.sensor_definition import SensorExecutionData

from billwerk_dagster.billwerk.endpoints import INVOICES, PAGE_SIZE_PARAM
from billwerk_dagster.orchestration import sensors
from billwerk_dagster.orchestration.automation_settings import AutomationSettings
from billwerk_dagster.orchestration.definitions import build_definitions
from billwerk_dagster.orchestration.jobs import NEW_INVOICES_JOB
from billwerk_dagster.orchestration.resources import BillwerkResource
from billwerk_dagster.orchestration.sensors import SENSOR_NAME, Newest
from billwerk_dagster.orchestration.settings import Settings
from billwerk_dagster.sandbox import Sandbox
from billwerk_dagster_tests.conftest import billwerk_for


def _sensor(settings: Settings, automation: AutomationSettings | None = None) -> SensorDefinition:
    defs = build_definitions(settings, automation=automation or AutomationSettings())
    return defs.resolve_sensor_def(SENSOR_NAME)


def _tick(
    sensor: SensorDefinition, billwerk: BillwerkResource, cursor: str | None
) -> SensorExecutionData:
    with build_sensor_context(cursor=cursor, resources={"billwerk": billwerk}) as context:
        return sensor.evaluate_tick(context)


def _invoice_list_requests(sandbox: Sandbox) -> list[dict[str, str]]:
    return [r.params for r in sandbox.stats.log if r.endpoint == INVOICES.name]


def _newest_id(sandbox: Sandbox) -> str:
    return max(sandbox.ids(INVOICES.name))


def _created(day: str, time: str = "10:00:00") -> str:
    return f"{day}T{time}.1234567Z"


def test_sensor_is_stopped_by_default_and_polls_at_the_configured_interval(
    settings: Settings,
) -> None:
    sensor = _sensor(settings, AutomationSettings(sensor_interval_seconds=120))
    assert sensor.default_status.value == "STOPPED"
    assert sensor.minimum_interval_seconds == 120
    assert sensor.job_name == NEW_INVOICES_JOB


def test_first_tick_remembers_the_newest_invoice_and_skips(
    settings: Settings, sandbox: Sandbox
) -> None:
    sandbox.reset_stats()
    data = _tick(_sensor(settings), billwerk_for(sandbox), cursor=None)

    assert not data.run_requests
    assert data.skip_message is not None and "First look" in data.skip_message
    assert Newest.decode(data.cursor) == Newest.of(sandbox.data.records(INVOICES.name)[0])
    assert Newest.decode(data.cursor).id == _newest_id(sandbox)  # type: ignore[union-attr]
    # One small request: the newest invoice only.
    assert _invoice_list_requests(sandbox) == [{PAGE_SIZE_PARAM: "1"}]


def test_quiet_tick_skips_with_a_reason_after_one_small_request(
    settings: Settings, sandbox: Sandbox
) -> None:
    sensor, billwerk = _sensor(settings), billwerk_for(sandbox)
    cursor = _tick(sensor, billwerk, cursor=None).cursor
    sandbox.reset_stats()

    data = _tick(sensor, billwerk, cursor)

    assert not data.run_requests
    assert data.skip_message == f"No invoice newer than {_newest_id(sandbox)}."
    assert data.cursor == cursor
    assert _invoice_list_requests(sandbox) == [{PAGE_SIZE_PARAM: "1"}]


def _ranges(data: SensorExecutionData) -> list[tuple[str, str]]:
    ranges = [r.partition_key_range for r in data.run_requests or []]
    return [(r.start, r.end) for r in ranges if r is not None]


def test_new_invoices_request_one_run_over_their_days_and_advance_the_cursor(
    settings: Settings, sandbox: Sandbox
) -> None:
    sensor, billwerk = _sensor(settings), billwerk_for(sandbox)
    cursor = _tick(sensor, billwerk, cursor=None).cursor

    sandbox.insert(INVOICES.name, created=_created("2024-01-15"))
    sandbox.insert(INVOICES.name, created=_created("2024-01-16", "23:59:59"))
    newest = sandbox.insert(INVOICES.name, created=_created("2024-01-15", "00:00:00"))
    data = _tick(sensor, billwerk, cursor)

    assert _ranges(data) == [("2024-01-15", "2024-01-16")]
    (request,) = data.run_requests or []
    assert request.run_key == f"{SENSOR_NAME}:{newest['Id']}:2024-01-15"
    advanced = Newest.decode(data.cursor)
    assert advanced is not None and advanced.id == newest["Id"] == _newest_id(sandbox)

    # Nothing newer since: the next tick is quiet again.
    again = _tick(sensor, billwerk, data.cursor)
    assert not again.run_requests
    assert again.cursor == data.cursor


def test_days_far_apart_get_a_run_each_not_one_run_over_everything_between(
    settings: Settings, sandbox: Sandbox
) -> None:
    sensor, billwerk = _sensor(settings), billwerk_for(sandbox)
    cursor = _tick(sensor, billwerk, cursor=None).cursor

    for day in ("2024-01-05", "2024-01-20", "2024-01-21"):
        sandbox.insert(INVOICES.name, created=_created(day))
    data = _tick(sensor, billwerk, cursor)

    assert _ranges(data) == [("2024-01-05", "2024-01-05"), ("2024-01-20", "2024-01-21")]
    assert len({r.run_key for r in data.run_requests or []}) == 2


def test_an_invoice_created_today_requests_todays_partition(
    settings: Settings, sandbox: Sandbox
) -> None:
    sensor, billwerk = _sensor(settings), billwerk_for(sandbox)
    cursor = _tick(sensor, billwerk, cursor=None).cursor

    sandbox.insert(INVOICES.name)  # created now
    today = datetime.now(UTC).date().isoformat()
    assert _ranges(_tick(sensor, billwerk, cursor)) == [(today, today)]


def test_more_new_invoices_than_the_page_bound_load_every_day_since_the_cursor(
    settings: Settings, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sensors, "PAGE_SIZE", 2)
    monkeypatch.setattr(sensors, "MAX_PAGES", 2)
    sensor, billwerk = _sensor(settings), billwerk_for(sandbox)
    cursor = Newest(id=_newest_id(sandbox), day=datetime(2024, 1, 9).date()).encode()

    for day in ("2024-01-20", "2024-01-21", "2024-01-22", "2024-01-23", "2024-01-24"):
        sandbox.insert(INVOICES.name, created=_created(day))
    sandbox.reset_stats()
    data = _tick(sensor, billwerk, cursor)

    # The pages read reach back to the 22nd; the unread invoices lie after the cursor's day.
    assert _ranges(data) == [("2024-01-09", "2024-01-24")]
    assert len(_invoice_list_requests(sandbox)) == 1 + 2  # the probe, then two pages


def test_an_invoice_before_the_start_date_is_skipped_with_the_setting_named(
    settings: Settings, sandbox: Sandbox
) -> None:
    sensor, billwerk = _sensor(settings), billwerk_for(sandbox)
    cursor = _tick(sensor, billwerk, cursor=None).cursor

    newest = sandbox.insert(INVOICES.name, created=_created("2023-12-31"))
    data = _tick(sensor, billwerk, cursor)

    assert not data.run_requests
    assert data.skip_message is not None and "BILLWERK_START_DATE" in data.skip_message
    assert Newest.decode(data.cursor).id == newest["Id"]  # type: ignore[union-attr]


def test_a_stopped_sandbox_gives_a_skip_not_an_exception(
    settings: Settings, sandbox: Sandbox
) -> None:
    sensor, billwerk = _sensor(settings), billwerk_for(sandbox)
    cursor = _tick(sensor, billwerk, cursor=None).cursor
    sandbox.stop()

    data = _tick(sensor, billwerk, cursor)

    assert not data.run_requests
    assert data.skip_message is not None
    assert data.skip_message.startswith("Billwerk could not be polled")
    assert "BILLWERK_BASE_URL" in data.skip_message
    assert data.cursor is None or data.cursor == cursor  # kept for the next tick


def test_wrong_credentials_give_a_skip_that_names_the_setting_and_not_the_secret(
    settings: Settings, sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "not-the-sandbox-secret-4711"
    billwerk = billwerk_for(sandbox, client_secret=secret)
    sandbox.reset_stats()

    with caplog.at_level(logging.DEBUG):
        data = _tick(_sensor(settings), billwerk, Newest(id=_newest_id(sandbox)).encode())

    assert not data.run_requests
    assert data.skip_message is not None
    assert "refused the client credentials" in data.skip_message
    assert "BILLWERK_CLIENT_SECRET" in data.skip_message
    assert secret not in data.skip_message
    assert secret not in caplog.text
    # Refused once, not asked again in a loop.
    assert sandbox.stats.token_requests == 1


def test_a_server_error_gives_a_skip_with_the_status(settings: Settings, sandbox: Sandbox) -> None:
    sandbox.faults.status(503, endpoint=INVOICES.name, count=None)

    data = _tick(_sensor(settings), billwerk_for(sandbox), Newest(id="0" * 24).encode())

    assert not data.run_requests
    assert data.skip_message is not None and "HTTP 503" in data.skip_message
    for token in sandbox.stats.tokens_issued:
        assert token not in data.skip_message


def test_a_cursor_typed_into_the_ui_as_a_bare_id_is_understood() -> None:
    assert Newest.decode("65A1B2C3D4E5F60718293A4B ") == Newest(id="65a1b2c3d4e5f60718293a4b")
    assert Newest.decode(None) is None
    assert Newest.decode(Newest(id=None).encode()) == Newest(id=None)
