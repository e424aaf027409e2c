"""What the sandbox saw: request counts, a request log, and the busiest second.

Tests assert on these to prove a client's behaviour: how many pages it read, that it
asked for a token once, that it never sent the token in the query string, and that its
request rate stayed polite.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

# Names the log uses for requests that are not to a list endpoint.
TOKEN = "token"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class LoggedRequest:
    """One request to the token endpoint or the API (control calls are not logged)."""

    time: float  # arrival, wall clock seconds since the epoch
    method: str
    path: str
    endpoint: str  # an endpoint name, TOKEN, or UNKNOWN
    params: dict[str, str]  # an access_token value is logged as "***"
    status: int  # 0 when the connection was dropped without an answer


@dataclass(frozen=True)
class Stats:
    """A snapshot of the sandbox's counters since the last reset."""

    requests: dict[str, int]  # API requests per endpoint name
    token_requests: int
    token_denied: int  # token requests answered 401 for wrong credentials
    query_token_attempts: int  # API requests that carried an access_token query param
    unauthorized: int  # API requests answered 401
    max_requests_per_second: int  # most requests (API and token) in any 1-second span
    tokens_issued: tuple[str, ...] = ()  # every token ever issued; survives reset
    log: tuple[LoggedRequest, ...] = field(default=(), repr=False)

    @property
    def api_requests(self) -> int:
        return sum(self.requests.values())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Stats:
        """Rebuild a snapshot sent as JSON by the control API."""
        return cls(
            requests=dict(raw["requests"]),
            token_requests=raw["token_requests"],
            token_denied=raw["token_denied"],
            query_token_attempts=raw["query_token_attempts"],
            unauthorized=raw["unauthorized"],
            max_requests_per_second=raw["max_requests_per_second"],
            tokens_issued=tuple(raw["tokens_issued"]),
            log=tuple(LoggedRequest(**entry) for entry in raw["log"]),
        )


class Recorder:
    """Thread-safe counters the request handlers write to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._log: list[LoggedRequest] = []
            self._query_token_attempts = 0

    def query_token_attempt(self) -> None:
        with self._lock:
            self._query_token_attempts += 1

    def log(self, entry: LoggedRequest) -> None:
        with self._lock:
            self._log.append(entry)

    def snapshot(self, tokens_issued: tuple[str, ...]) -> Stats:
        with self._lock:
            log = tuple(self._log)
            query_token_attempts = self._query_token_attempts

        api = [entry for entry in log if entry.endpoint not in (TOKEN, UNKNOWN)]
        tokens = [entry for entry in log if entry.endpoint == TOKEN]
        return Stats(
            requests=dict(Counter(entry.endpoint for entry in api)),
            token_requests=len(tokens),
            token_denied=sum(1 for entry in tokens if entry.status == 401),
            query_token_attempts=query_token_attempts,
            unauthorized=sum(1 for entry in api if entry.status == 401),
            max_requests_per_second=_busiest_second([entry.time for entry in log]),
            tokens_issued=tokens_issued,
            log=log,
        )


def _busiest_second(times: list[float]) -> int:
    """The most timestamps that fit in any window one second long."""
    times = sorted(times)
    best = first = 0
    for last, moment in enumerate(times):
        while moment - times[first] >= 1.0:
            first += 1
        best = max(best, last - first + 1)
    return best
