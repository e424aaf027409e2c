"""The dlt source: one resource per Billwerk endpoint, read from the endpoint table.

Snapshot endpoints (customers, contracts) replace their table at every sync, through a
staging table so that a failed sync leaves the previous snapshot whole. Windowed endpoints
(invoices, orders) fetch one creation-time window and merge on `Id`, so re-loading a day
adds nothing twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import dlt
from dlt.extract.resource import DltResource
from requests import HTTPError, RequestException

from billwerk_dagster.billwerk.client import (
    BillwerkClient,
    BillwerkConnection,
    build_client,
    raise_for_status,
)
from billwerk_dagster.billwerk.endpoints import (
    DATE_FROM_PARAM,
    DATE_TO_PARAM,
    ENDPOINTS,
    PRIMARY_KEY,
    Endpoint,
)
from billwerk_dagster.billwerk.errors import BillwerkApiError, excerpt
from billwerk_dagster.billwerk.paging import FromCursorPaginator
from billwerk_dagster.billwerk.window import Window

logger = logging.getLogger(__name__)

SOURCE_NAME = "billwerk"


@dataclass
class EndpointStats:
    """What one endpoint's sync did, for logs and asset metadata."""

    records: int = 0
    pages: int = 0
    requests: int = 0  # HTTP answers, retries and 401 re-sends included
    seconds: float = 0.0  # from the first request until the last page was handed on


@dataclass
class SyncStats:
    endpoints: dict[str, EndpointStats] = field(default_factory=dict)

    def __getitem__(self, name: str) -> EndpointStats:
        return self.endpoints.setdefault(name, EndpointStats())


def _column_hints(endpoint: Endpoint) -> dict[str, dict[str, Any]]:
    return {
        endpoint.created_field: {"data_type": "timestamp", "timezone": True},
        PRIMARY_KEY: {"data_type": "text", "nullable": False},
    }


def _write_disposition(endpoint: Endpoint) -> dict[str, str]:
    if endpoint.windowed:
        return {"disposition": "merge", "strategy": "delete-insert"}
    return {"disposition": "replace"}


def _fetch_pages(
    client: BillwerkClient,
    connection: BillwerkConnection,
    endpoint: Endpoint,
    params: dict[str, Any],
    stats: EndpointStats,
) -> Iterator[list[dict[str, Any]]]:
    """Every page of one list, newest first, with failures turned into clear errors."""

    def count_request(response: Any, *args: Any, **kwargs: Any) -> None:
        stats.requests += 1 + len(response.history)

    started = time.monotonic()
    try:
        for page in client.paginate(
            endpoint.path,
            params=params,
            paginator=FromCursorPaginator(connection.page_size),
            hooks={"response": [count_request, raise_for_status]},
        ):
            stats.pages += 1
            stats.records += len(page)
            yield page
    except HTTPError as e:
        raise BillwerkApiError(_http_error_message(connection, endpoint, e)) from e
    except RequestException as e:
        raise BillwerkApiError(
            f"Could not read /{endpoint.path} from {connection.host} after "
            f"{connection.max_attempts} attempts ({type(e).__name__}). Check BILLWERK_BASE_URL "
            "and that the host is reachable."
        ) from e
    finally:
        stats.seconds += time.monotonic() - started

    logger.info(
        "Fetched %s %s in %s pages, %s requests, %.1fs",
        stats.records,
        endpoint.name,
        stats.pages,
        stats.requests,
        stats.seconds,
    )


def _http_error_message(connection: BillwerkConnection, endpoint: Endpoint, e: HTTPError) -> str:
    response = e.response
    status = response.status_code if response is not None else "?"
    body = excerpt(response.text) if response is not None else ""
    where = f"Billwerk answered HTTP {status} for /{endpoint.path} at {connection.host}"
    if status == 404:
        return f"{where}: no such endpoint. Check BILLWERK_BASE_URL (the API lives under /api/v1/)."
    if status == 401:
        return f"{where}, also with a fresh token: check the OAuth client's permissions. {body}"
    if status == 429 or (isinstance(status, int) and status >= 500):
        return (
            f"{where} on all {connection.max_attempts} attempts, with backoff from "
            f"{connection.backoff_seconds:g}s: {body}. Billwerk may be down or rate limiting; "
            "try again later."
        )
    return f"{where}: {body}"


def _endpoint_resource(
    client: BillwerkClient,
    connection: BillwerkConnection,
    endpoint: Endpoint,
    window: Window | None,
    stats: EndpointStats,
) -> DltResource:
    generator: Any
    if not endpoint.windowed:

        def snapshot_records() -> Iterator[list[dict[str, Any]]]:
            yield from _fetch_pages(client, connection, endpoint, {}, stats)

        generator = snapshot_records
    elif window is None:

        def no_window() -> Iterator[list[dict[str, Any]]]:
            raise ValueError(f"{endpoint.name} is loaded by window: pass the window to load")
            yield  # pragma: no cover - makes this a generator

        generator = no_window
    else:

        def windowed_records(
            created: dlt.sources.incremental[str] = dlt.sources.incremental(
                endpoint.created_field,
                initial_value=window.date_from,
                end_value=window.date_to,
                range_start="closed",
                range_end="closed",
            ),
        ) -> Iterator[list[dict[str, Any]]]:
            # The bounds are the API's inclusive date filter; dlt's incremental double-checks
            # every record against them. With an end value it keeps no state between runs,
            # so any past day can be reloaded.
            params = {DATE_FROM_PARAM: created.start_value, DATE_TO_PARAM: created.end_value}
            yield from _fetch_pages(client, connection, endpoint, params, stats)

        generator = windowed_records

    # The generators above differ in signature, which dlt's overloads cannot express.
    return dlt.resource(  # type: ignore[call-overload,no-any-return]
        generator,
        name=endpoint.name,
        primary_key=PRIMARY_KEY,
        write_disposition=_write_disposition(endpoint),
        columns=_column_hints(endpoint),
    )


@dlt.source(name=SOURCE_NAME)
def billwerk_source(
    connection: BillwerkConnection,
    window: Window | None = None,
    stats: SyncStats | None = None,
) -> list[DltResource]:
    """One resource per endpoint; the windowed ones load `window` and need it to run.

    One client, and so one token, serves every endpoint of the sync.
    """
    client = build_client(connection)
    stats = stats if stats is not None else SyncStats()
    return [
        _endpoint_resource(client, connection, endpoint, window, stats[endpoint.name])
        for endpoint in ENDPOINTS.values()
    ]
