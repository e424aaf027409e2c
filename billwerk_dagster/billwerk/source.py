"""The dlt source: one resource per Billwerk endpoint, read from the endpoint table.

Snapshot endpoints (customers, contracts) replace their table at every sync, through a
staging table so that a failed sync leaves the previous snapshot whole. Windowed endpoints
(invoices, orders) fetch one creation-time window and merge on `Id`, so re-loading a day
adds nothing twice; a window of several days is read as sub-windows at once, each with its
own cursor (`connection.workers`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import dlt
from dlt.common.schema.typing import TColumnSchema, TWriteDispositionConfig
from dlt.extract.resource import DltResource
from requests import HTTPError, RequestException

from billwerk_dagster.billwerk.client import (
    BillwerkClient,
    BillwerkConnection,
    build_client,
    raise_for_status,
)
from billwerk_dagster.billwerk.concurrency import interleave
from billwerk_dagster.billwerk.endpoints import (
    DATE_FROM_PARAM,
    DATE_TO_PARAM,
    ENDPOINTS,
    PRIMARY_KEY,
    Endpoint,
)
from billwerk_dagster.billwerk.errors import BillwerkApiError, excerpt
from billwerk_dagster.billwerk.paging import FromCursorPaginator
from billwerk_dagster.billwerk.tables import arrow_items
from billwerk_dagster.billwerk.window import Window

logger = logging.getLogger(__name__)

SOURCE_NAME = "billwerk"
# Pages fetched ahead per worker thread, waiting for dlt: enough to keep every worker busy
# while dlt extracts, few enough that memory does not depend on the size of the window.
PAGES_AHEAD_PER_WORKER = 2


@dataclass
class EndpointStats:
    """What one endpoint's sync did, for logs and asset metadata."""

    records: int = 0
    pages: int = 0
    requests: int = 0  # HTTP answers, retries and 401 re-sends included
    seconds: float = 0.0  # from the first request until the last page was handed on

    def add_counts(self, other: EndpointStats) -> None:
        """Add the records, pages and requests of a sub-window (fetched in its own thread)."""
        self.records += other.records
        self.pages += other.pages
        self.requests += other.requests


@dataclass
class SyncStats:
    endpoints: dict[str, EndpointStats] = field(default_factory=dict)

    def __getitem__(self, name: str) -> EndpointStats:
        return self.endpoints.setdefault(name, EndpointStats())


def _column_hints(endpoint: Endpoint) -> dict[str, TColumnSchema]:
    return {
        endpoint.created_field: {"data_type": "timestamp", "timezone": True},
        PRIMARY_KEY: {"data_type": "text", "nullable": False},
    }


def _write_disposition(endpoint: Endpoint) -> TWriteDispositionConfig:
    if endpoint.windowed:
        return {"disposition": "merge", "strategy": "delete-insert"}
    return {"disposition": "replace"}


def _fetch_pages(
    client: BillwerkClient,
    connection: BillwerkConnection,
    endpoint: Endpoint,
    params: dict[str, Any],
    stats: EndpointStats,
) -> Generator[list[dict[str, Any]], None, None]:
    """Every page of one list, newest first, with failures turned into clear errors.

    Counts records, pages and requests into `stats`, which only this pager may write to.
    """

    def count_request(response: Any, *args: Any, **kwargs: Any) -> None:
        stats.requests += 1 + len(response.history)

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


def _window_params(window: Window) -> dict[str, Any]:
    return {DATE_FROM_PARAM: window.date_from, DATE_TO_PARAM: window.date_to}


def _fetch_window(
    client: BillwerkClient,
    connection: BillwerkConnection,
    endpoint: Endpoint,
    window: Window,
    stats: EndpointStats,
) -> Iterator[list[dict[str, Any]]]:
    """Every page of `window`, its whole days read as up to `connection.workers` sub-windows
    at once, each by a pager of its own. The pages come in no particular order."""
    parts = window.split(connection.workers)
    if len(parts) == 1:
        yield from _fetch_part(client, connection, endpoint, window, stats)
        return

    logger.info(
        "Fetching %s created in %s as %s sub-windows at once", endpoint.name, window, len(parts)
    )
    # Each pager stays sequential (a page's cursor is the last Id of the one before); the
    # pagers run side by side by hand, see `concurrency` for why dlt's parallelism does not fit.
    part_stats = [EndpointStats() for _ in parts]
    pagers = [
        partial(_fetch_part, client, connection, endpoint, part, counts)
        for part, counts in zip(parts, part_stats, strict=True)
    ]
    try:
        yield from interleave(
            pagers, buffer=PAGES_AHEAD_PER_WORKER * len(parts), name=f"billwerk-{endpoint.name}"
        )
    finally:
        # interleave has stopped every pager by now, so their counts are final.
        for counts in part_stats:
            stats.add_counts(counts)


def _fetch_part(
    client: BillwerkClient,
    connection: BillwerkConnection,
    endpoint: Endpoint,
    part: Window,
    stats: EndpointStats,
) -> Generator[list[dict[str, Any]], None, None]:
    """Every page of one (sub-)window by one pager, only the records created inside it."""
    pages = _fetch_pages(client, connection, endpoint, _window_params(part), stats)
    yield from _within(endpoint, part, pages)


def _timed(
    endpoint: Endpoint, stats: EndpointStats, pages: Iterator[list[dict[str, Any]]]
) -> Iterator[list[dict[str, Any]]]:
    """Pass `pages` on, adding the wall time to `stats` and logging the totals at the end."""
    started = time.monotonic()
    try:
        yield from pages
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

        def snapshot_records() -> Iterator[Any]:
            # One unfiltered list has one cursor: there is nothing to read side by side.
            pages = _fetch_pages(client, connection, endpoint, {}, stats)
            yield from _as_tables(endpoint, _timed(endpoint, stats, pages))

        generator = snapshot_records
    elif window is None:

        def no_window() -> Iterator[Any]:
            raise ValueError(f"{endpoint.name} is loaded by window: pass the window to load")
            yield  # pragma: no cover - makes this a generator

        generator = no_window
    else:

        def windowed_records() -> Iterator[Any]:
            # Each Id comes once: the sub-windows do not overlap and each keeps only the
            # records created inside it, and within one the cursor record, which the API
            # sends twice, is dropped by the paginator. No cursor state is kept between
            # runs, so any past day can be reloaded.
            pages = _fetch_window(client, connection, endpoint, window, stats)
            yield from _as_tables(endpoint, _timed(endpoint, stats, pages), keys_unique=True)

        generator = windowed_records

    return dlt.resource(  # type: ignore[call-overload,no-any-return]
        generator, name=endpoint.name, write_disposition=_write_disposition(endpoint)
    )


def _as_tables(
    endpoint: Endpoint, pages: Iterator[list[dict[str, Any]]], keys_unique: bool = False
) -> Iterator[Any]:
    """The pages as Arrow tables, the root table's and its children's, each with its hints."""
    return arrow_items(
        endpoint.name,
        PRIMARY_KEY,
        pages,
        _write_disposition(endpoint),
        _column_hints(endpoint),
        keys_unique=keys_unique,
    )


def _within(
    endpoint: Endpoint, window: Window, pages: Iterator[list[dict[str, Any]]]
) -> Iterator[list[dict[str, Any]]]:
    """The records created inside `window`; any other is dropped with a warning.

    This is a check of the API's date filter, done for every sub-window so that a record
    on the edge between two cannot come from both. Done here and not by dlt's incremental: dlt
    filters each Arrow table by its own cursor column, and the child tables have none.
    Timestamps in Billwerk's fixed seven-digit form compare correctly as strings.
    """
    first, last = window.date_from, window.date_to
    created = endpoint.created_field
    for page in pages:
        inside = [record for record in page if first <= record.get(created, "") <= last]
        if len(inside) < len(page):
            logger.warning(
                "Billwerk sent %s %s created outside %s; they are left out",
                len(page) - len(inside),
                endpoint.name,
                window,
            )
        yield inside


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
