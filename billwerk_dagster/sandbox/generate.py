"""Deterministic fake Billwerk accounts, with the awkward days real accounts have.

`generate` fills one `SandboxData` from a seed. Besides ordinary traffic the invoices
contain the cases a loader gets wrong: a month-end billing run of more than one page of
records with the identical `Created` timestamp, one invoice at the last tick of a day and
one at the first tick of the next, a day without invoices and a day with exactly one.
`SandboxData.edges` says where these are, so tests can assert on them.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import partial
from typing import Any

from billwerk_dagster.billwerk.endpoints import (
    CONTRACTS,
    CUSTOMERS,
    ENDPOINTS,
    INVOICES,
    ORDERS,
    PRIMARY_KEY,
)
from billwerk_dagster.sandbox.formats import (
    TICKS_PER_DAY,
    TICKS_PER_SECOND,
    day_ticks,
    format_ticks,
    now_ticks,
    parse_timestamp,
    to_json,
)
from billwerk_dagster.sandbox.records import Record, RecordFactory
from billwerk_dagster.sandbox.store import Table

# The billing run's time of day; the 7th fractional digit catches clients that keep six.
_BURST_TIME = (2 * 3600 + 15 * 60) * TICKS_PER_SECOND + 1234567


@dataclass(frozen=True)
class Edges:
    """Where the generated invoices hold their edge cases (all times UTC)."""

    window_start: date
    window_end: date  # the last day with data, inclusive
    burst_days: tuple[date, ...]  # last day of each month in the window
    burst_created: tuple[str, ...]  # the one `Created` value of each day's billing run
    burst_size: int  # invoices per billing run, all with that exact timestamp
    last_tick_day: date  # holds an invoice at 23:59:59.9999999
    last_tick_created: str
    first_tick_created: str  # 00:00:00.0000000 on the day after last_tick_day
    empty_day: date  # no invoices at all
    single_day: date  # exactly one invoice

    def to_dict(self) -> dict[str, Any]:
        """The edges as JSON-ready values, dates as `YYYY-MM-DD`."""
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if isinstance(value, date):
                value = value.isoformat()
            elif isinstance(value, tuple):
                value = [v.isoformat() if isinstance(v, date) else v for v in value]
            out[key] = value
        return out


class SandboxData:
    """The records of one fake account, one `Table` per endpoint.

    Mutable on purpose: the sandbox server inserts and removes records at runtime.
    """

    def __init__(self, factory: RecordFactory, edges: Edges) -> None:
        self.factory = factory
        self.edges = edges
        self.tables = {name: Table(endpoint) for name, endpoint in ENDPOINTS.items()}
        self._lock = threading.Lock()
        self._sequence = 0

    def add(self, name: str, ticks: int, build: Callable[[str], Record]) -> Record:
        """Give a new record the next, highest Id and store its JSON."""
        table = self.table(name)
        with self._lock:
            # Time prefix plus a global sequence: ObjectId-like, ordered by creation.
            self._sequence += 1
            prefix = table.next_prefix(ticks // TICKS_PER_SECOND)
            record = build(f"{prefix:08x}{self._sequence:016x}")
            table.append(record[PRIMARY_KEY], ticks, to_json(record))
        return record

    def insert(self, name: str, record: Record | None = None, created: str | None = None) -> Record:
        """Add one record at runtime and return it as the API now serves it.

        With no `record` a new one is generated. The creation time is `created`, else the
        record's own creation field, else now; the Id is always new and the highest.
        """
        field = self.table(name).endpoint.created_field
        if created is None and record is not None and record.get(field):
            created = str(record[field])
        ticks = now_ticks() if created is None else parse_timestamp(created)

        def build(record_id: str) -> Record:
            if record is None:
                return self.factory.make(name, record_id, ticks)
            rest = {k: v for k, v in record.items() if k != PRIMARY_KEY}
            return {PRIMARY_KEY: record_id, **rest, field: format_ticks(ticks)}

        stored = self.add(name, ticks, build)
        return dict(json.loads(to_json(stored)))

    def update(self, name: str, record: Record) -> bool:
        """Edit a record in place: same Id, same creation time, the fields of `record`."""
        return self.table(name).replace(str(record[PRIMARY_KEY]), to_json(record))

    def remove(self, name: str, record_id: str) -> bool:
        """Delete one record; False when there was none with that Id."""
        return self.table(name).remove(record_id)

    def ids(self, name: str, date_from: str | None = None, date_to: str | None = None) -> list[str]:
        """The Ids the API lists for `name`, newest first, within an optional window."""
        lo = None if date_from is None else parse_timestamp(date_from)
        hi = None if date_to is None else parse_timestamp(date_to)
        return self.table(name).ids(lo, hi)

    def records(self, name: str) -> list[Record]:
        """Every record of `name` as parsed JSON, newest first."""
        return [json.loads(body) for body in self.table(name).bodies()]

    def counts(self) -> dict[str, int]:
        return {name: len(table) for name, table in self.tables.items()}

    def table(self, name: str) -> Table:
        try:
            return self.tables[name]
        except KeyError:
            msg = f"the sandbox has no endpoint {name!r}; known: {sorted(self.tables)}"
            raise KeyError(msg) from None


def generate(
    seed: int = 7,
    start: date = date(2024, 1, 1),
    days: int = 90,
    customers: int = 300,
    contracts: int = 400,
    invoices: int = 5000,
    orders: int = 600,
    burst: int = 700,
) -> SandboxData:
    """A fake account whose invoices and orders fall on `days` days from `start`.

    `invoices` is the total, billing runs included, so it must be at least `burst` times
    the number of month ends in the window plus 3 for the edge invoices.
    """
    if customers < 1 or contracts < 1:
        msg = f"need at least one customer and one contract, got {customers} and {contracts}"
        raise ValueError(msg)
    rng = random.Random(seed)
    start_ticks = day_ticks(start)
    invoice_ticks, edges = _plan_invoices(rng, start, days, invoices, burst)
    factory = RecordFactory(rng, late_ticks=start_ticks + days * TICKS_PER_DAY // 2)
    data = SandboxData(factory, edges)

    # Customers and contracts exist before the window, so every reference points back.
    customer_ticks = sorted(
        start_ticks - rng.randrange(30 * TICKS_PER_DAY, 730 * TICKS_PER_DAY)
        for _ in range(customers)
    )
    for ticks in customer_ticks:
        data.add(CUSTOMERS.name, ticks, partial(factory.customer, ticks=ticks))

    owners = [rng.randrange(customers) for _ in range(contracts)]
    starts = sorted(
        (customer_ticks[i] + rng.randrange(start_ticks - customer_ticks[i]), i) for i in owners
    )
    for ticks, owner in starts:
        data.add(CONTRACTS.name, ticks, partial(factory.contract, ticks=ticks, customer=owner))

    for ticks in invoice_ticks:
        data.add(INVOICES.name, ticks, partial(factory.invoice, ticks=ticks))
    order_ticks = sorted(start_ticks + rng.randrange(days * TICKS_PER_DAY) for _ in range(orders))
    for ticks in order_ticks:
        data.add(ORDERS.name, ticks, partial(factory.order, ticks=ticks))
    return data


def _plan_invoices(
    rng: random.Random, start: date, days: int, total: int, burst: int
) -> tuple[list[int], Edges]:
    """The sorted creation ticks of all invoices, and where the edge cases are."""
    month_ends = [i for i in range(days) if (start + timedelta(days=i + 1)).day == 1]
    empty, single, last_tick = _pick_edge_days(days, set(month_ends))
    regular = total - burst * len(month_ends) - 3
    if regular < 0:
        msg = (
            f"{total} invoices cannot hold {len(month_ends)} billing runs of {burst} "
            f"plus 3 edge invoices; raise invoices or lower burst"
        )
        raise ValueError(msg)

    # The fixed points first: billing runs, the edge pair, the lone invoice.
    start_ticks = day_ticks(start)
    bursts = [start_ticks + i * TICKS_PER_DAY + _BURST_TIME for i in month_ends]
    last_tick_ticks = start_ticks + (last_tick + 1) * TICKS_PER_DAY - 1
    fixed = {*bursts, last_tick_ticks, last_tick_ticks + 1}
    ticks = [t for t in bursts for _ in range(burst)]
    ticks += [last_tick_ticks, last_tick_ticks + 1]
    ticks.append(start_ticks + single * TICKS_PER_DAY + rng.randrange(TICKS_PER_DAY))

    # Then ordinary traffic on every other day, never landing on a fixed point.
    open_days = [i for i in range(days) if i not in (empty, single)]
    while len(ticks) < total:
        day = open_days[rng.randrange(len(open_days))]
        tick = start_ticks + day * TICKS_PER_DAY + rng.randrange(TICKS_PER_DAY)
        if tick not in fixed:
            ticks.append(tick)
    ticks.sort()

    edges = Edges(
        window_start=start,
        window_end=start + timedelta(days=days - 1),
        burst_days=tuple(start + timedelta(days=i) for i in month_ends),
        burst_created=tuple(format_ticks(t) for t in bursts),
        burst_size=burst,
        last_tick_day=start + timedelta(days=last_tick),
        last_tick_created=format_ticks(last_tick_ticks),
        first_tick_created=format_ticks(last_tick_ticks + 1),
        empty_day=start + timedelta(days=empty),
        single_day=start + timedelta(days=single),
    )
    return ticks, edges


def _pick_edge_days(days: int, month_ends: set[int]) -> tuple[int, int, int]:
    """Day offsets for the empty day, the single-invoice day and the last-tick day.

    The three stay apart from each other and from billing days; the last-tick day's
    successor (which holds the first-tick invoice) must be an ordinary day as well.
    """
    free = [i for i in range(days) if i not in month_ends]
    by_middle = sorted(free, key=lambda i: abs(i - days // 2))
    by_quarter = sorted(free, key=lambda i: abs(i - days // 4))
    for empty in by_middle:
        for single in by_middle:
            for last_tick in by_quarter:
                taken = {empty, single}
                if (
                    single != empty
                    and last_tick + 1 in free
                    and last_tick not in taken
                    and last_tick + 1 not in taken
                ):
                    return empty, single, last_tick
    msg = f"a window of {days} days is too short for the edge days; use at least 7"
    raise ValueError(msg)
