"""The sandbox's control API under `/_sandbox/`, and a client for it.

Tests and benchmarks that run the sandbox in another process drive it through these
unauthenticated JSON routes:

    GET  /_sandbox/health          counts of records per endpoint
    GET  /_sandbox/stats           the `Stats` snapshot
    POST /_sandbox/reset-stats
    GET  /_sandbox/faults          armed switches, latency, held requests
    POST /_sandbox/faults          a switch as JSON (see `faults`), or a list of them
    POST /_sandbox/remove          {"endpoint": ..., "id": ...}
    POST /_sandbox/insert          {"endpoint": ..., "record": {...} | null,
                                    "count": 1, "created": null}
    GET  /_sandbox/ids/<endpoint>  optional dateFrom / dateTo, as the API reads them
    GET  /_sandbox/edges           where the generated edge cases are
    GET  /_sandbox/tokens          every token issued
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from billwerk_dagster.billwerk.endpoints import DATE_FROM_PARAM, DATE_TO_PARAM
from billwerk_dagster.sandbox.stats import Stats

if TYPE_CHECKING:
    from billwerk_dagster.sandbox.server import Sandbox

PREFIX = "/_sandbox/"


def handle(
    sandbox: Sandbox, method: str, route: str, params: dict[str, str], body: bytes
) -> tuple[int, Any]:
    """Answer one control request: (HTTP status, JSON-ready body).

    `route` is the path after `/_sandbox/`; `params` are keyed by lower-case name.
    """
    try:
        payload = json.loads(body) if body else None
        return _dispatch(sandbox, method, route.strip("/"), params, payload)
    except (KeyError, ValueError, TypeError) as e:
        return 400, {"error": f"{type(e).__name__}: {e}"}


def _dispatch(
    sandbox: Sandbox, method: str, route: str, params: dict[str, str], payload: Any
) -> tuple[int, Any]:
    if method == "GET" and route == "health":
        return 200, {"ok": True, "counts": sandbox.data.counts()}
    if method == "GET" and route == "stats":
        return 200, sandbox.stats.to_dict()
    if method == "POST" and route == "reset-stats":
        sandbox.reset_stats()
        return 200, {"ok": True}
    if method == "GET" and route == "faults":
        return 200, sandbox.faults.describe()
    if method == "POST" and route == "faults":
        specs = payload if isinstance(payload, list) else [payload]
        rules = [sandbox.faults.apply(spec) for spec in specs]
        return 200, {"rules": [rule.describe() if rule else None for rule in rules]}

    if method == "POST" and route == "remove":
        return 200, {"removed": sandbox.remove(payload["endpoint"], payload["id"])}
    if method == "POST" and route == "insert":
        records = [
            sandbox.insert(payload["endpoint"], payload.get("record"), payload.get("created"))
            for _ in range(int(payload.get("count", 1)))
        ]
        return 200, {"records": records}
    if method == "GET" and route.startswith("ids/"):
        date_from = params.get(DATE_FROM_PARAM.lower())
        date_to = params.get(DATE_TO_PARAM.lower())
        return 200, {"ids": sandbox.data.ids(route[len("ids/") :], date_from, date_to)}
    if method == "GET" and route == "edges":
        return 200, sandbox.data.edges.to_dict()
    if method == "GET" and route == "tokens":
        return 200, {"tokens": list(sandbox.tokens.issued)}
    return 404, {"error": f"no control route {method} {PREFIX}{route}"}


class SandboxClient:
    """Drives a sandbox running in another process through its control API."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        # The sandbox is local: a proxy from the environment must not sit in between.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def health(self) -> dict[str, Any]:
        return dict(self._call("GET", "health"))

    def stats(self) -> Stats:
        return Stats.from_dict(self._call("GET", "stats"))

    def reset_stats(self) -> None:
        self._call("POST", "reset-stats", {})

    def fault(self, kind: str, **options: Any) -> dict[str, Any]:
        """Arm one switch, e.g. `fault("status", code=429, retry_after=1)`."""
        return dict(self._call("POST", "faults", {"kind": kind, **options})["rules"][0] or {})

    def faults(self) -> dict[str, Any]:
        return dict(self._call("GET", "faults"))

    def release(self) -> None:
        self._call("POST", "faults", {"kind": "release"})

    def clear_faults(self) -> None:
        self._call("POST", "faults", {"kind": "clear"})

    def remove(self, endpoint: str, record_id: str) -> bool:
        answer = self._call("POST", "remove", {"endpoint": endpoint, "id": record_id})
        return bool(answer["removed"])

    def insert(
        self,
        endpoint: str,
        record: dict[str, Any] | None = None,
        count: int = 1,
        created: str | None = None,
    ) -> list[dict[str, Any]]:
        payload = {"endpoint": endpoint, "record": record, "count": count, "created": created}
        return list(self._call("POST", "insert", payload)["records"])

    def ids(
        self, endpoint: str, date_from: str | None = None, date_to: str | None = None
    ) -> list[str]:
        """The Ids the API lists, newest first, within an optional window."""
        window = {DATE_FROM_PARAM: date_from, DATE_TO_PARAM: date_to}
        query = urlencode({key: value for key, value in window.items() if value is not None})
        return list(self._call("GET", f"ids/{endpoint}?{query}")["ids"])

    def edges(self) -> dict[str, Any]:
        return dict(self._call("GET", "edges"))

    def tokens(self) -> list[str]:
        return list(self._call("GET", "tokens")["tokens"])

    def _call(self, method: str, route: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.url}{PREFIX}{route}", data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            detail = e.read()[:500].decode("utf-8", "replace")
            msg = f"sandbox control {method} {route} answered {e.code}: {detail}"
            raise RuntimeError(msg) from e


@dataclass(frozen=True)
class SandboxProcess:
    url: str
    pid: int


@contextmanager
def sandbox_process(folder: Path, *args: str) -> Iterator[str]:
    """`python -m billwerk_dagster.sandbox` for the block; yields its URL.

    `args` are its CLI flags; `folder` holds the port file it writes once serving.
    """
    with sandbox_server_process(folder, *args) as server:
        yield server.url


@contextmanager
def sandbox_server_process(
    folder: Path, *args: str, log: Path | None = None, start_timeout_s: float = 120
) -> Iterator[SandboxProcess]:
    """`sandbox_process`, with its pid, its output in `log` (else dropped), and a timeout
    for generating the data and starting to serve."""
    port_file = folder / "sandbox.port"
    port_file.unlink(missing_ok=True)
    command = [
        sys.executable, "-m", "billwerk_dagster.sandbox", "--port", "0",
        "--port-file", str(port_file), "--log-level", "WARNING", *args,
    ]  # fmt: skip
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(log.open("w")) if log else subprocess.DEVNULL
        server = subprocess.Popen(command, stdout=output, stderr=output if log else None)
        try:
            deadline = time.monotonic() + start_timeout_s
            while not (port_file.exists() and port_file.read_text().strip()):
                if server.poll() is not None or time.monotonic() > deadline:
                    where = f"; see {log}" if log else ""
                    raise RuntimeError(f"the local Billwerk sandbox did not start{where}")
                time.sleep(0.05)
            yield SandboxProcess(f"http://127.0.0.1:{port_file.read_text().strip()}", server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
