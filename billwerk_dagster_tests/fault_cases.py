"""The fault matrix: each transient fault the real API or its gateways produce, as a
sandbox switch. Shared by the fault tests and by `bench/fault_matrix.py`, which prints the
table of rows, duplicates, requests and token requests per fault."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from billwerk_dagster.billwerk.endpoints import INVOICES
from billwerk_dagster.sandbox import Sandbox


@dataclass(frozen=True)
class FaultCase:
    name: str
    rate: str
    arm: Callable[[Sandbox], object]
    # For one snapshot run plus one range run: one token each, plus what the fault forces.
    token_requests: int = 2


def _every(rate: float) -> str:
    return f"{rate:.0%} of requests"


TRANSIENT_FAULTS = [
    FaultCase("none", "-", lambda sb: None),
    FaultCase(
        "429 with Retry-After",
        "3 in a row",
        lambda sb: sb.faults.status(429, retry_after=0.05, count=3),
    ),
    FaultCase(
        "429 without Retry-After",
        _every(0.25),
        lambda sb: sb.faults.status(429, rate=0.25, count=None),
    ),
    FaultCase("502 HTML", _every(0.25), lambda sb: sb.faults.status(502, rate=0.25, count=None)),
    FaultCase("503 HTML", "3 in a row", lambda sb: sb.faults.status(503, count=3)),
    FaultCase("connection dropped", _every(0.25), lambda sb: sb.faults.drop(rate=0.25, count=None)),
    FaultCase("slow answer past timeout", "2 in a row", lambda sb: sb.faults.slow(1.5, count=2)),
    FaultCase(
        "body cut short (short read)",
        _every(0.25),
        lambda sb: sb.faults.truncate(rate=0.25, count=None),
    ),
    FaultCase(
        "body cut short (broken JSON)",
        _every(0.25),
        lambda sb: sb.faults.truncate(length_matches=True, rate=0.25, count=None),
    ),
    FaultCase(
        "token revoked mid-run", "once, 3rd request", lambda sb: sb.faults.revoke_tokens(after=2), 3
    ),
    FaultCase(
        "token endpoint 503", "2 in a row", lambda sb: sb.faults.token_error(503, count=2), 4
    ),
    FaultCase(
        "invoices created during the sync",
        "after the 2nd page",
        lambda sb: sb.faults.insert_after(
            2, endpoint=INVOICES.name, records=7, created="2024-01-20T08:00:00.0000000Z"
        ),
    ),
]
