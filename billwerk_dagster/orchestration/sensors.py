"""The new-invoices sensor: one small request for Billwerk's newest invoice, and a run for
the days that new invoices fall in.

The cursor is the newest invoice seen, its Id and its day of creation. Lists come newest
first and Ids order like creation time, so the invoices newer than the cursor are the ones
above it: a quiet tick costs one request with `take=1`, and a busy one pages down from the
top until the cursor's Id shows up, a bounded number of pages. Their days, usually just
today, become one run per stretch of consecutive days.

The first tick (no cursor) only remembers the newest invoice and skips. Loading history is
a backfill's job; requesting "today" then would load a day that may hold nothing new, and
an account with years of invoices must not get them all from a sensor turned on.

The sensor is STOPPED by default: it polls the account's API around the clock, which its
owner should switch on knowingly (the Automation page in the UI, or
`dagster sensor start billwerk_new_invoices`). An unreachable API, refused credentials or
a server error skip the tick with the reason in its log; the daemon never sees an exception.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    TimeWindowPartitionsDefinition,
    sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)
from requests import RequestException

from billwerk_dagster.billwerk.client import (
    BillwerkClient,
    BillwerkConnection,
    build_client,
    raise_for_status,
)
from billwerk_dagster.billwerk.endpoints import INVOICES, PRIMARY_KEY
from billwerk_dagster.billwerk.errors import BillwerkError
from billwerk_dagster.billwerk.paging import FromCursorPaginator
from billwerk_dagster.orchestration.automation_settings import AutomationSettings
from billwerk_dagster.orchestration.jobs import days_within, range_tags
from billwerk_dagster.orchestration.resources import BillwerkResource

SENSOR_NAME = "billwerk_new_invoices"
PROBE_SIZE = 1
PAGE_SIZE = 100
MAX_PAGES = 10
# Past this the tick stops paging and loads every day since the cursor's instead.
MAX_PAGING_SECONDS = 30.0

# A tick must end well inside Dagster's 60 s sensor timeout, so it gives up sooner than a
# sync would: two attempts, short waits. The next tick is the retry.
PROBE_ATTEMPTS = 2
PROBE_MAX_WAIT_SECONDS = 5.0
PROBE_CONNECT_TIMEOUT_SECONDS = 5.0
PROBE_READ_TIMEOUT_SECONDS = 20.0


@dataclass(frozen=True)
class Newest:
    """The newest invoice seen: the sensor's cursor. `id` is None for an empty account."""

    id: str | None
    day: date | None = None

    def encode(self) -> str:
        return json.dumps({"id": self.id, "day": self.day.isoformat() if self.day else None})

    @classmethod
    def decode(cls, cursor: str | None) -> Newest | None:
        if not cursor:
            return None
        try:
            value = json.loads(cursor)
        except ValueError:
            # A bare Id, as someone may type it into the UI's "set cursor" box.
            return cls(id=cursor.strip().lower())
        if not isinstance(value, dict):
            return cls(id=str(value).strip().lower())
        day = value.get("day")
        return cls(id=value.get("id"), day=date.fromisoformat(day) if day else None)

    @classmethod
    def of(cls, record: dict[str, Any]) -> Newest:
        return cls(id=str(record[PRIMARY_KEY]), day=created_day(record))


@dataclass
class NewInvoices:
    """What one look at the top of the invoice list found."""

    newest: Newest
    days: set[date] = field(default_factory=set)
    count: int = 0
    pages: int = 0
    reached_cursor: bool = True


def created_day(record: dict[str, Any]) -> date | None:
    """The UTC day an invoice was created; None when the field is missing or unreadable."""
    value = record.get(INVOICES.created_field)
    if not value:
        return None
    try:
        # Python 3.11 reads Billwerk's seven fractional digits by dropping the last one,
        # which never moves a timestamp across midnight.
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    # Billwerk writes UTC; a value without an offset is read as UTC too.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).date()


def probe_connection(connection: BillwerkConnection) -> BillwerkConnection:
    """The same account, with the retry budget of a sensor tick instead of a sync."""
    return replace(
        connection,
        max_attempts=min(connection.max_attempts, PROBE_ATTEMPTS),
        backoff_seconds=min(connection.backoff_seconds, PROBE_MAX_WAIT_SECONDS),
        max_backoff_seconds=min(connection.max_backoff_seconds, PROBE_MAX_WAIT_SECONDS),
        connect_timeout_seconds=min(
            connection.connect_timeout_seconds, PROBE_CONNECT_TIMEOUT_SECONDS
        ),
        read_timeout_seconds=min(connection.read_timeout_seconds, PROBE_READ_TIMEOUT_SECONDS),
    )


def _pages(client: BillwerkClient, page_size: int) -> Iterator[list[dict[str, Any]]]:
    """The invoice list from the newest record down, `page_size` records a request."""
    yield from client.paginate(
        INVOICES.path,
        paginator=FromCursorPaginator(page_size),
        hooks={"response": [raise_for_status]},
    )


def newest_invoice(client: BillwerkClient) -> dict[str, Any] | None:
    """The newest invoice, in one request for one record; None for an account without any."""
    for page in _pages(client, PROBE_SIZE):
        return page[0] if page else None
    return None


def invoices_since(
    client: BillwerkClient, seen: Newest, page_size: int, max_pages: int, max_seconds: float
) -> NewInvoices:
    """The days of the invoices newer than `seen`; one small request when there are none.

    Paging stops after `max_pages` pages or `max_seconds`, with `reached_cursor` False.
    """
    started = time.monotonic()
    newest = newest_invoice(client)
    if newest is None:
        return NewInvoices(newest=seen)
    if seen.id is not None and str(newest[PRIMARY_KEY]) <= seen.id:
        return NewInvoices(newest=seen)

    found = NewInvoices(newest=Newest.of(newest), reached_cursor=False)
    for page in _pages(client, page_size):
        found.pages += 1
        for record in page:
            if seen.id is not None and str(record[PRIMARY_KEY]) <= seen.id:
                found.reached_cursor = True
                return found
            found.count += 1
            day = created_day(record)
            if day is not None:
                found.days.add(day)
        if found.pages >= max_pages or time.monotonic() - started > max_seconds:
            return found
    # The list ended before the cursor: every invoice is new (or the cursor's was deleted).
    found.reached_cursor = True
    return found


def build_new_invoices_sensor(
    job: UnresolvedAssetJobDefinition,
    partitions: TimeWindowPartitionsDefinition,
    settings: AutomationSettings,
) -> SensorDefinition:
    """The sensor, polling every `settings.sensor_interval_seconds`, launching `job`."""

    @sensor(
        name=SENSOR_NAME,
        job=job,
        minimum_interval_seconds=settings.sensor_interval_seconds,
        default_status=DefaultSensorStatus.STOPPED,
        description=(
            "Polls Billwerk for its newest invoice and loads the days that new invoices fall "
            "in, today's included. Off by default; the first tick only remembers where the "
            "list stands."
        ),
    )
    def billwerk_new_invoices(
        context: SensorEvaluationContext, billwerk: BillwerkResource
    ) -> SensorResult:
        seen = Newest.decode(context.cursor)
        try:
            client = build_client(probe_connection(billwerk.connection()))
            if seen is None:
                return _first_look(context, client)
            found = invoices_since(client, seen, PAGE_SIZE, MAX_PAGES, MAX_PAGING_SECONDS)
        except (BillwerkError, RequestException) as e:
            # The next tick is the retry; an exception here would only show a stack trace.
            reason = (
                f"Billwerk could not be polled: {str(e).rstrip('.')}. The cursor stays; "
                "the next tick tries again."
            )
            context.log.warning(reason)
            return SensorResult(skip_reason=reason)

        if found.count == 0:
            return SensorResult(
                skip_reason=f"No invoice newer than {seen.id or 'none (the account is empty)'}."
            )
        return _request_days(context, partitions, seen, found)

    return billwerk_new_invoices


def _first_look(context: SensorEvaluationContext, client: BillwerkClient) -> SensorResult:
    record = newest_invoice(client)
    newest = Newest.of(record) if record is not None else Newest(id=None)
    message = (
        f"First look: the newest invoice is {newest.id} (created {newest.day}); "
        "later ticks load the days of invoices newer than it. Load history with a backfill."
        if newest.id
        else "First look: the account has no invoices yet; the first one will be loaded."
    )
    context.log.info(message)
    return SensorResult(skip_reason=message, cursor=newest.encode())


def _request_days(
    context: SensorEvaluationContext,
    partitions: TimeWindowPartitionsDefinition,
    seen: Newest,
    found: NewInvoices,
) -> SensorResult:
    days = set(found.days)
    if not found.reached_cursor:
        # More new invoices than the pages read: the unread ones were created between the
        # cursor's invoice and the oldest one read, so every day in between is loaded too.
        context.log.warning(
            f"More than {_invoices(found.count)} are new; stopped paging before {seen.id}. "
            + (
                f"Loading every day since {seen.day} instead."
                if seen.day and days
                else "Older new invoices, if any, need a backfill."
            )
        )
        if seen.day and days:
            days |= set(_every_day(seen.day, min(days)))

    now = datetime.now(UTC)
    spans = [days_within(partitions, first, last, now) for first, last in day_spans(days)]
    loadable = [span for span in spans if span is not None]
    if not loadable:
        listed = ", ".join(d.isoformat() for d in sorted(days)) or "unknown"
        message = (
            f"{_invoices(found.count)} newer than {seen.id}, none on a day this project "
            f"loads (created {listed}); see BILLWERK_START_DATE."
        )
        context.log.warning(message)
        return SensorResult(skip_reason=message, cursor=found.newest.encode())

    context.log.info(
        f"{_invoices(found.count)} newer than {seen.id} on {len(days)} day(s); loading "
        + ", ".join(first if first == last else f"{first}..{last}" for first, last in loadable)
        + (" in one run." if len(loadable) == 1 else f" in {len(loadable)} runs.")
    )
    requests = [
        # Keyed by the newest Id: evaluating this tick twice launches nothing twice.
        RunRequest(run_key=f"{SENSOR_NAME}:{found.newest.id}:{first}", tags=range_tags(first, last))
        for first, last in loadable
    ]
    return SensorResult(run_requests=requests, cursor=found.newest.encode())


def day_spans(days: Iterable[date]) -> list[tuple[date, date]]:
    """The days as runs of consecutive days, oldest first: one run each.

    A range run over days nobody asked for would reload them all; a day-long gap costs
    one more run, which the warehouse pool queues behind the first.
    """
    spans: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if spans and day - spans[-1][1] <= timedelta(days=1):
            spans[-1] = (spans[-1][0], day)
        else:
            spans.append((day, day))
    return spans


def _every_day(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def _invoices(count: int) -> str:
    return f"{count} invoice" if count == 1 else f"{count} invoices"
