"""Fault switches: make the sandbox misbehave the way real APIs and gateways do.

Each switch adds a `Rule`. A rule watches the requests to one endpoint (`endpoint=None`
means every list endpoint; `TOKEN` means the token endpoint), lets the first `after` of
them pass, then fires on the next `count` (None: no limit), or on each with probability
`rate` drawn from a seeded RNG. At most one rule replaces a request's answer (a status,
a dropped connection, an object body, a truncated body); another answer-replacing rule
that is due waits for the next request, so switches added in turn fire in turn.

In process: `sandbox.faults.status(503, endpoint="invoices")`. Over HTTP: POST the same
as JSON to `/_sandbox/faults`, e.g. `{"kind": "status", "code": 503, "endpoint":
"invoices"}`; every switch below is a kind, with its keyword arguments as keys.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict, Unpack

from billwerk_dagster.billwerk.endpoints import ENDPOINTS
from billwerk_dagster.sandbox.stats import TOKEN

# Kinds that replace the answer; the others delay it, change it, or act beside it.
ANSWERS = frozenset({"status", "drop", "truncate", "object_body"})


class When(TypedDict, total=False):
    """Which requests a switch fires on; every switch takes these keywords."""

    endpoint: str | None
    after: int
    count: int | None
    rate: float | None


@dataclass
class Rule:
    """One armed fault and how often it has matched and fired."""

    kind: str
    endpoint: str | None = None
    after: int = 0
    count: int | None = 1
    rate: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    seen: int = 0
    fired: int = 0
    event: threading.Event | None = field(default=None, repr=False)

    @property
    def spent(self) -> bool:
        return self.count is not None and self.fired >= self.count

    def describe(self) -> dict[str, Any]:
        keys = ("kind", "endpoint", "after", "count", "rate", "seen", "fired")
        return {**{key: getattr(self, key) for key in keys}, **self.options}


@dataclass
class Decision:
    """The faults that fired for one request, in the order the server applies them."""

    latency_s: float = 0.0
    delay_s: float = 0.0
    hold: Rule | None = None
    revoke: bool = False
    ignore_from: bool = False
    widen_s: float = 0.0
    answer: Rule | None = None
    inserts: list[Rule] = field(default_factory=list)


class Faults:
    """The fault switches of one sandbox."""

    def __init__(self, seed: int = 0, latency_ms: float = 0) -> None:
        self.latency_ms = latency_ms
        self._rng = random.Random(seed)
        self._rules: list[Rule] = []
        self._lock = threading.Lock()
        self._holding = threading.Condition(self._lock)
        self._held = 0

    # The switches. Each takes endpoint / after / count / rate as described above.

    def status(self, code: int, *, retry_after: float | None = None, **when: Unpack[When]) -> Rule:
        """Answer `code`: JSON for 4xx and 500, an HTML page for 502-504 (as gateways do).

        `retry_after` adds a `Retry-After` header (seconds), as 429s sometimes carry.
        """
        return self._add("status", when, {"code": code, "retry_after": retry_after})

    def token_error(self, code: int = 503, **when: Unpack[When]) -> Rule:
        """Make the token endpoint answer `code`."""
        when["endpoint"] = TOKEN
        return self._add("status", when, {"code": code, "retry_after": None})

    def drop(self, **when: Unpack[When]) -> Rule:
        """Close the connection without answering."""
        return self._add("drop", when, {})

    def truncate(self, *, length_matches: bool = False, **when: Unpack[When]) -> Rule:
        """Send a 200 whose JSON is cut in half, then close the connection.

        By default Content-Length announces the whole body (a short read for the
        client); with `length_matches` it announces the cut one (a JSON error instead).
        """
        return self._add("truncate", when, {"length_matches": length_matches})

    def object_body(self, message: str = "An error has occurred.", **when: Unpack[When]) -> Rule:
        """Answer 200 with a JSON object `{"Message": ...}` instead of a list."""
        return self._add("object_body", when, {"message": message})

    def slow(self, seconds: float, **when: Unpack[When]) -> Rule:
        """Sleep `seconds` before answering normally."""
        return self._add("slow", when, {"seconds": seconds})

    def hold(self, *, timeout: float = 30.0, **when: Unpack[When]) -> Rule:
        """Block the request until `release()` or `timeout`, then answer normally."""
        return self._add("hold", when, {"timeout": timeout}, threading.Event())

    def revoke_tokens(self, **when: Unpack[When]) -> Rule:
        """Revoke every live token as the request arrives, so it gets 401."""
        return self._add("revoke_tokens", when, {})

    def ignore_from(self, **when: Unpack[When]) -> Rule:
        """Serve the page as if the `from` cursor had not been sent."""
        return self._add("ignore_from", when, {})

    def widen_window(self, seconds: float, **when: Unpack[When]) -> Rule:
        """Serve `dateFrom` / `dateTo` as if each were `seconds` further out: a sloppy filter
        that sends the records of a neighbouring window's edge too."""
        return self._add("widen_window", when, {"seconds": seconds})

    def insert_after(
        self, requests: int, records: int = 1, *, created: str | None = None, **when: Unpack[When]
    ) -> Rule:
        """Insert `records` new records while answering the `requests`-th request.

        The page of that request is cut first, so they show up from the next request on.
        They get the highest Ids; their creation time is `created`, else now.
        """
        when["after"], when["count"] = requests - 1, 1
        return self._add("insert_after", when, {"records": records, "created": created})

    def set_latency(self, ms: float) -> None:
        """Delay every API and token request by `ms` milliseconds."""
        self.latency_ms = ms

    def release(self) -> None:
        """Let every held request go, and disarm the hold switches."""
        with self._lock:
            for rule in self._rules:
                if rule.event is not None:
                    rule.event.set()
            self._rules = [rule for rule in self._rules if rule.kind != "hold"]

    def clear(self) -> None:
        """Disarm every switch, release held requests, and drop the latency."""
        self.release()
        with self._lock:
            self._rules.clear()
        self.latency_ms = 0

    def apply(self, spec: dict[str, Any]) -> Rule | None:
        """Set a switch from its JSON form: `{"kind": <method name>, **keyword arguments}`."""
        switches: dict[str, Callable[..., Rule | None]] = {
            "status": self.status,
            "token_error": self.token_error,
            "drop": self.drop,
            "truncate": self.truncate,
            "object_body": self.object_body,
            "slow": self.slow,
            "hold": self.hold,
            "revoke_tokens": self.revoke_tokens,
            "ignore_from": self.ignore_from,
            "widen_window": self.widen_window,
            "insert_after": self.insert_after,
            "latency": self.set_latency,
            "release": self.release,
            "clear": self.clear,
        }
        arguments = dict(spec)
        kind = arguments.pop("kind", None)
        if kind not in switches:
            msg = f"unknown fault kind {kind!r}; known: {sorted(switches)}"
            raise ValueError(msg)
        result = switches[kind](**arguments)
        return result if isinstance(result, Rule) else None

    def describe(self) -> dict[str, Any]:
        with self._lock:
            rules = [rule.describe() for rule in self._rules]
            return {"rules": rules, "latency_ms": self.latency_ms, "holding": self._held}

    # What the server calls.

    def decide(self, endpoint: str) -> Decision:
        """Which switches fire for one request to `endpoint` (a name or TOKEN)."""
        decision = Decision(latency_s=self.latency_ms / 1000)
        with self._lock:
            for rule in self._rules:
                if not self._due(rule, endpoint):
                    continue
                if rule.kind in ANSWERS:
                    if decision.answer is not None:
                        continue
                    decision.answer = rule
                elif rule.kind == "slow":
                    decision.delay_s += float(rule.options["seconds"])
                elif rule.kind == "hold":
                    decision.hold = rule
                elif rule.kind == "revoke_tokens":
                    decision.revoke = True
                elif rule.kind == "ignore_from":
                    decision.ignore_from = True
                elif rule.kind == "widen_window":
                    decision.widen_s = max(decision.widen_s, float(rule.options["seconds"]))
                elif rule.kind == "insert_after":
                    decision.inserts.append(rule)
                rule.fired += 1
            self._rules = [rule for rule in self._rules if not rule.spent or rule.event]
        return decision

    def wait_held(self, rule: Rule) -> None:
        """Block a request on a hold switch until released or timed out."""
        assert rule.event is not None
        with self._holding:
            self._held += 1
            self._holding.notify_all()
        try:
            rule.event.wait(float(rule.options["timeout"]))
        finally:
            with self._holding:
                self._held -= 1
                self._holding.notify_all()

    def wait_for_hold(self, held: int = 1, timeout: float = 10.0) -> bool:
        """Wait until `held` requests are blocked on hold switches; False on timeout."""
        with self._holding:
            return self._holding.wait_for(lambda: self._held >= held, timeout)

    @property
    def holding(self) -> int:
        with self._lock:
            return self._held

    def _add(
        self,
        kind: str,
        when: When,
        options: dict[str, Any],
        event: threading.Event | None = None,
    ) -> Rule:
        endpoint = when.pop("endpoint", None)
        if endpoint is not None and endpoint != TOKEN and endpoint not in ENDPOINTS:
            msg = f"unknown endpoint {endpoint!r} for a fault; known: {sorted(ENDPOINTS)}"
            raise ValueError(msg)
        rate = when.pop("rate", None)
        rule = Rule(
            kind=kind,
            endpoint=endpoint,
            after=int(when.pop("after", 0)),
            # A rate with no count keeps firing; a plain switch fires once.
            count=when.pop("count", None if rate is not None else 1),
            rate=rate,
            options=options,
            event=event,
        )
        if when:
            msg = f"unknown options for fault {kind!r}: {sorted(when)}"
            raise TypeError(msg)
        with self._lock:
            self._rules.append(rule)
        return rule

    def _due(self, rule: Rule, endpoint: str) -> bool:
        """Count the request for `rule` and say whether the rule fires on it."""
        if rule.endpoint != endpoint and not (rule.endpoint is None and endpoint != TOKEN):
            return False
        if rule.spent:
            return False
        rule.seen += 1
        if rule.seen <= rule.after:
            return False
        return rule.rate is None or self._rng.random() < rule.rate
