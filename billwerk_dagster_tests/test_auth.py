"""OAuth2 client credentials against the local sandbox: one token reused across endpoints
and pages, refreshed before expiry and once after a revocation, never requested in a loop
on bad credentials, and sent only in the Authorization header."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from billwerk_dagster.billwerk.client import BillwerkConnection, build_client
from billwerk_dagster.billwerk.errors import BillwerkAuthError, find_billwerk_error
from billwerk_dagster.billwerk.source import SyncStats, billwerk_source
from billwerk_dagster.billwerk.window import Window
from billwerk_dagster.sandbox import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    Sandbox,
    SandboxData,
)

ALL_DAYS = Window(datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC))


def _connection(sandbox: Sandbox, secret: str = DEFAULT_CLIENT_SECRET) -> BillwerkConnection:
    return BillwerkConnection(
        base_url=sandbox.url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=secret,
        page_size=100,
        backoff_seconds=0.01,
        max_backoff_seconds=0.05,
    )


def _extract_all(connection: BillwerkConnection) -> dict[str, list[str]]:
    """Run every resource of the source and collect the Ids, with no destination."""
    source = billwerk_source(connection, ALL_DAYS, SyncStats())
    try:
        # Each resource yields Arrow tables: its own, which has `id`, and its child tables.
        return {
            name: [
                record_id
                for table in resource
                if "id" in table.column_names
                for record_id in table.column("id").to_pylist()
            ]
            for name, resource in source.resources.items()
        }
    except Exception as e:
        # Unwrap dlt's extraction error to what the source raised.
        raise find_billwerk_error(e) or e from e


def test_one_token_serves_every_endpoint_and_page(sandbox: Sandbox) -> None:
    fetched = _extract_all(_connection(sandbox))

    assert sum(sandbox.stats.requests.values()) > 10
    assert sandbox.stats.token_requests == 1
    assert set(fetched["customers"]) == sandbox.ids("customers")


def test_a_revoked_token_is_replaced_once_and_the_sync_goes_on(sandbox: Sandbox) -> None:
    sandbox.faults.revoke_tokens(endpoint="invoices", after=3)

    fetched = _extract_all(_connection(sandbox))

    assert sandbox.stats.token_requests == 2
    assert sorted(fetched["invoices"]) == sorted(
        sandbox.ids("invoices", ALL_DAYS.date_from, ALL_DAYS.date_to)
    )


def test_bad_credentials_fail_once_with_a_hint_and_no_retry_loop(sandbox: Sandbox) -> None:
    with pytest.raises(
        BillwerkAuthError, match="check BILLWERK_CLIENT_ID and BILLWERK_CLIENT_SECRET"
    ):
        _extract_all(_connection(sandbox, secret="not-the-secret"))

    assert sandbox.stats.token_requests == 1
    assert sandbox.stats.api_requests == 0


def test_a_refused_secret_is_not_asked_for_again_by_later_requests(sandbox: Sandbox) -> None:
    client = build_client(_connection(sandbox, secret="wrong"))
    for _ in range(3):
        with pytest.raises(BillwerkAuthError):
            client.get("customers")

    assert sandbox.stats.token_requests == 1


def test_an_expiring_token_is_renewed_before_the_api_refuses_it(
    sandbox_data: SandboxData,
) -> None:
    with Sandbox(sandbox_data, token_ttl_s=2) as sandbox:
        client = build_client(_connection(sandbox))
        client.get("customers", params={"take": 1})
        time.sleep(2.1)
        client.get("customers", params={"take": 1})

        assert sandbox.stats.token_requests == 2
        assert sandbox.stats.unauthorized == 0


def test_the_token_travels_only_in_the_authorization_header(sandbox: Sandbox) -> None:
    _extract_all(_connection(sandbox))

    stats = sandbox.stats
    assert stats.query_token_attempts == 0
    assert all("access_token" not in entry.params for entry in stats.log)
    client = build_client(_connection(sandbox))
    assert "secret" not in repr(client.auth).lower()
    assert DEFAULT_CLIENT_SECRET not in repr(client.auth)
