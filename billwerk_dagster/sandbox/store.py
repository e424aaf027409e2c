"""One endpoint's records, kept so that a page is a pair of bisections and a join.

Records are held as pre-serialized JSON, ascending by Id, next to their creation ticks.
Generated data and ordinary inserts are created in Id order, so the ticks ascend too and
a date window is a bisection. A record inserted with a back-dated creation time breaks
that order; it goes to a short side list of stragglers that every query merges in, which
keeps the answers exact without scanning the main list.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

from billwerk_dagster.billwerk.endpoints import Endpoint

_NO_LIMIT = 1 << 62


@dataclass(frozen=True)
class Query:
    """The filters of one list request, already validated."""

    take: int
    skip: int = 0
    cursor: str | None = None
    lo: int | None = None
    hi: int | None = None


class Table:
    """The records of one endpoint, listed newest first."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.lock = threading.RLock()
        self._ids: list[str] = []
        self._ticks: list[int] = []
        self._bodies: list[bytes] = []
        self._stragglers: list[tuple[str, int, bytes]] = []
        self._max_prefix = 0

    def __len__(self) -> int:
        return len(self._ids) + len(self._stragglers)

    def next_prefix(self, created_seconds: int) -> int:
        """The time prefix for a new Id: never below one in use, so the Id is the highest."""
        return max(created_seconds, self._max_prefix)

    def append(self, record_id: str, ticks: int, body: bytes) -> None:
        """Add a record whose Id is higher than every Id held."""
        with self.lock:
            if self._ids and record_id <= self._ids[-1]:
                msg = f"{self.endpoint.name}: new Id {record_id} is not the highest"
                raise ValueError(msg)
            if self._stragglers and record_id <= self._stragglers[-1][0]:
                msg = f"{self.endpoint.name}: new Id {record_id} is not the highest"
                raise ValueError(msg)

            self._max_prefix = max(self._max_prefix, int(record_id[:8], 16))
            if self._ticks and ticks < self._ticks[-1]:
                self._stragglers.append((record_id, ticks, body))
                return
            self._ids.append(record_id)
            self._ticks.append(ticks)
            self._bodies.append(body)

    def remove(self, record_id: str) -> bool:
        """Delete one record; False when no record has that Id."""
        with self.lock:
            index = bisect_left(self._ids, record_id)
            if index < len(self._ids) and self._ids[index] == record_id:
                del self._ids[index], self._ticks[index], self._bodies[index]
                return True
            for index, straggler in enumerate(self._stragglers):
                if straggler[0] == record_id:
                    del self._stragglers[index]
                    return True
            return False

    def replace(self, record_id: str, body: bytes) -> bool:
        """Give a record a new body, as an edit in Billwerk does; False when there is none."""
        with self.lock:
            index = bisect_left(self._ids, record_id)
            if index < len(self._ids) and self._ids[index] == record_id:
                self._bodies[index] = body
                return True
            for index, (straggler_id, ticks, _) in enumerate(self._stragglers):
                if straggler_id == record_id:
                    self._stragglers[index] = (straggler_id, ticks, body)
                    return True
            return False

    def page(self, query: Query) -> list[bytes]:
        """The JSON bodies a list request returns, newest first."""
        with self.lock:
            rows = self._select(query, limit=query.skip + query.take)
            return [body for _, body in rows[query.skip : query.skip + query.take]]

    def ids(self, lo: int | None = None, hi: int | None = None) -> list[str]:
        """Every Id the API lists within an optional tick window, newest first."""
        with self.lock:
            return [record_id for record_id, _ in self._select(Query(take=0, lo=lo, hi=hi))]

    def bodies(self) -> list[bytes]:
        """Every record's JSON, newest first."""
        with self.lock:
            return [body for _, body in self._select(Query(take=0))]

    def _select(self, query: Query, limit: int = _NO_LIMIT) -> list[tuple[str, bytes]]:
        # Bounds in the main list: the window by ticks, the cursor by Id; both inclusive.
        start = 0 if query.lo is None else bisect_left(self._ticks, query.lo)
        end = len(self._ids) if query.hi is None else bisect_right(self._ticks, query.hi)
        if query.cursor is not None:
            end = min(end, bisect_right(self._ids, query.cursor))
        start = max(start, end - limit)
        rows = [(self._ids[i], self._bodies[i]) for i in range(end - 1, start - 1, -1)]
        if not self._stragglers:
            return rows

        extra = [
            (record_id, body)
            for record_id, ticks, body in self._stragglers
            if (query.lo is None or ticks >= query.lo)
            and (query.hi is None or ticks <= query.hi)
            and (query.cursor is None or record_id <= query.cursor)
        ]
        return sorted(rows + extra, reverse=True)[:limit]
