"""The pipeline under faults and bad input. Transient faults are retried and leave the
warehouse exact (every Id once, none missing) with a known number of token requests;
everything else fails at once, says which setting to fix, and leaves the warehouse as it
was. Request counts come from the sandbox, so a retry loop would show."""

from __future__ import annotations

import itertools
import re

import pytest
from dagster import DagsterInstance, ExecuteInProcessResult

from billwerk_dagster.billwerk.client import BillwerkConnection
from billwerk_dagster.billwerk.endpoints import ENDPOINTS, INVOICES, WINDOWED_ENDPOINTS
from billwerk_dagster.billwerk.errors import BillwerkConfigError
from billwerk_dagster.orchestration.assets import asset_key
from billwerk_dagster.orchestration.settings import Settings
from billwerk_dagster.sandbox import Sandbox
from billwerk_dagster_tests.conftest import DAYS, START, Project, billwerk_for
from billwerk_dagster_tests.fault_cases import TRANSIENT_FAULTS, FaultCase

FIRST, LAST = START.isoformat(), f"2024-02-{DAYS - 31:02d}"
INVOICES_KEY = asset_key(INVOICES)
WINDOW = ("2024-01-01T00:00:00.0000000Z", f"{LAST}T23:59:59.9999999Z")


def _listed(sandbox: Sandbox) -> dict[str, set[str]]:
    return {
        name: sandbox.ids(name, *WINDOW) if endpoint in WINDOWED_ENDPOINTS else sandbox.ids(name)
        for name, endpoint in ENDPOINTS.items()
    }


def _failure(result: ExecuteInProcessResult) -> str:
    [failure] = result.get_step_failure_events()
    error = failure.step_failure_data.error
    assert error is not None
    return error.message


def _invoices_with(
    settings: Settings, sandbox: Sandbox, *days: str, **billwerk: object
) -> ExecuteInProcessResult:
    """Materialize invoices for `days` with the Billwerk resource's settings overridden."""
    with DagsterInstance.ephemeral() as instance:
        project = Project(settings, billwerk_for(sandbox, **billwerk), instance)
        return project.materialize([INVOICES_KEY], *days, raise_on_error=False)


@pytest.mark.parametrize("case", TRANSIENT_FAULTS, ids=lambda case: case.name)
def test_transient_faults_are_retried_and_leave_every_id_exactly_once(
    case: FaultCase, settings: Settings, sandbox: Sandbox
) -> None:
    before = _listed(sandbox)
    rule = case.arm(sandbox)

    with DagsterInstance.ephemeral() as instance:
        project = Project(
            settings, billwerk_for(sandbox, read_timeout_seconds=1.0, page_size=100), instance
        )
        project.load_snapshots()
        project.load_days(FIRST, LAST)

    after = _listed(sandbox)
    for name in ENDPOINTS:
        loaded = project.ids(name)
        assert len(loaded) == len(set(loaded)), f"{name}: duplicates"
        # Records created during the sync may be in it or not; nothing else may differ.
        assert before[name] <= set(loaded) <= after[name], name
    assert sandbox.stats.token_requests == case.token_requests
    assert rule is None or getattr(rule, "fired", 0) > 0, "the fault never fired"
    assert sandbox.stats.query_token_attempts == 0


def test_a_fault_that_outlasts_the_retries_fails_naming_endpoint_status_and_attempts(
    project: Project, sandbox: Sandbox
) -> None:
    project.load_days(FIRST)
    before = project.ids(INVOICES.name)
    sandbox.faults.status(503, endpoint=INVOICES.name, count=None)

    result = project.materialize([INVOICES_KEY], FIRST, LAST, raise_on_error=False)

    assert not result.success
    message = _failure(result)
    assert "HTTP 503 for /invoices" in message
    assert "on all 6 attempts" in message
    # Each of the range's sub-windows (BILLWERK_WORKERS, 4) tried its first page 6 times.
    assert sandbox.stats.requests[INVOICES.name] == 1 + 6 * 4
    assert project.ids(INVOICES.name) == before


def test_a_server_ignoring_the_cursor_fails_instead_of_looping(
    settings: Settings, sandbox: Sandbox
) -> None:
    sandbox.faults.ignore_from(endpoint=INVOICES.name, after=1)

    # One pager, so that the second request is the first to carry a cursor.
    result = _invoices_with(settings, sandbox, FIRST, LAST, workers=1)

    assert "does not honour the cursor" in _failure(result)
    assert sandbox.stats.requests[INVOICES.name] == 2


def test_wrong_credentials_fail_with_one_token_request_and_a_hint(
    sandbox: Sandbox, settings: Settings
) -> None:
    result = _invoices_with(settings, sandbox, FIRST, LAST, client_secret="not-it-5e2f")

    assert "check BILLWERK_CLIENT_ID and BILLWERK_CLIENT_SECRET" in _failure(result)
    assert "not-it-5e2f" not in _failure(result)
    assert sandbox.stats.token_requests == 1
    assert sandbox.stats.api_requests == 0


def test_an_unknown_endpoint_names_the_path_and_the_host(
    project: Project, sandbox: Sandbox
) -> None:
    sandbox.faults.status(404, endpoint=INVOICES.name)

    result = project.materialize([INVOICES_KEY], FIRST, raise_on_error=False)

    message = _failure(result)
    assert f"HTTP 404 for /invoices at {sandbox.url}" in message
    assert "Check BILLWERK_BASE_URL" in message
    assert sandbox.stats.requests[INVOICES.name] == 1


def test_an_answer_that_is_json_but_not_a_list_is_refused(
    project: Project, sandbox: Sandbox
) -> None:
    sandbox.faults.object_body("Something went wrong", endpoint=INVOICES.name)

    result = project.materialize([INVOICES_KEY], FIRST, raise_on_error=False)

    assert "JSON that is not a list" in _failure(result)
    assert sandbox.stats.requests[INVOICES.name] == 1


def test_a_refused_connection_fails_after_the_retry_limit(
    settings: Settings, sandbox: Sandbox
) -> None:
    result = _invoices_with(settings, sandbox, FIRST, base_url="http://127.0.0.1:9", max_attempts=2)

    message = _failure(result)
    assert "Could not reach the Billwerk token endpoint http://127.0.0.1:9/oauth/token/" in message
    assert "Check BILLWERK_BASE_URL" in message


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("base_url", "ftp://billwerk.example", "BILLWERK_BASE_URL must be an http(s) URL"),
        ("base_url", "sandbox.billwerk.com", "BILLWERK_BASE_URL must be an http(s) URL"),
        ("page_size", 501, "BILLWERK_PAGE_SIZE must be between 2 and 500"),
        ("page_size", 1, "BILLWERK_PAGE_SIZE must be between 2 and 500"),
        ("client_id", "", "BILLWERK_CLIENT_ID is empty"),
    ],
)
def test_a_bad_setting_fails_before_any_request_naming_the_variable(
    setting: str, value: object, expected: str, sandbox: Sandbox, settings: Settings
) -> None:
    with pytest.raises(BillwerkConfigError, match=re.escape(expected)):
        BillwerkConnection(
            **{"base_url": sandbox.url, "client_id": "a", "client_secret": "b", setting: value}  # type: ignore[arg-type]
        )

    result = _invoices_with(settings, sandbox, FIRST, **{setting: value})
    assert expected in _failure(result)
    assert sandbox.stats.token_requests == 0
    assert sandbox.stats.api_requests == 0


def test_backoff_honours_retry_after_and_otherwise_grows(
    settings: Settings, sandbox: Sandbox
) -> None:
    sandbox.faults.status(429, retry_after=1, endpoint=INVOICES.name, count=1)
    sandbox.faults.status(503, endpoint=INVOICES.name, count=4)

    result = _invoices_with(settings, sandbox, FIRST, backoff_seconds=0.1, max_backoff_seconds=0.5)
    assert result.success

    times = [e.time for e in sandbox.stats.log if e.endpoint == INVOICES.name]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # After the 429 its Retry-After (dlt caps it at the longest backoff); after each 503
    # an exponential wait from the first backoff on, capped.
    assert 0.5 <= gaps[0] < 1.0
    assert 0.2 <= gaps[1] < gaps[2] < 0.5
    assert 0.5 <= gaps[3] < 0.9


def test_no_repr_of_the_configuration_shows_the_secret(sandbox: Sandbox) -> None:
    from billwerk_dagster.billwerk.client import build_client

    billwerk = billwerk_for(sandbox, client_secret="repr-s3cret")
    connection = billwerk.connection()
    client = build_client(connection)
    for shown in (repr(billwerk), str(billwerk), repr(connection), repr(client.auth)):
        assert "repr-s3cret" not in shown
