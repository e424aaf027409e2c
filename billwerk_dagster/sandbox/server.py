"""The sandbox server: Billwerk's token endpoint and list API over real HTTP.

`Sandbox` serves one `SandboxData` on 127.0.0.1 from a thread, so tests exercise real
sockets, real status codes and real connection faults. Each request goes through the
same steps: decide which fault switches fire, delay, check the token, read the params,
cut the page from the pre-serialized records, answer, and log what happened.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
import threading
import time
from dataclasses import replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from billwerk_dagster.billwerk.endpoints import ENDPOINTS
from billwerk_dagster.sandbox import control
from billwerk_dagster.sandbox.auth import Tokens
from billwerk_dagster.sandbox.faults import Decision, Faults, Rule
from billwerk_dagster.sandbox.formats import TICKS_PER_SECOND
from billwerk_dagster.sandbox.generate import SandboxData, generate
from billwerk_dagster.sandbox.params import (
    QUERY_TOKEN_PARAM,
    BadParams,
    list_query,
    lowered,
)
from billwerk_dagster.sandbox.records import Record
from billwerk_dagster.sandbox.stats import TOKEN, UNKNOWN, LoggedRequest, Recorder, Stats

logger = logging.getLogger(__name__)

# Credentials the sandbox accepts unless told otherwise; they guard nothing real.
DEFAULT_CLIENT_ID = "sandbox-client"
DEFAULT_CLIENT_SECRET = "sandbox-secret"

API_PREFIX = "/api/v1/"
TOKEN_PATH = "/oauth/token"
JSON_TYPE = "application/json; charset=utf-8"

_PATHS = {endpoint.path.lower(): name for name, endpoint in ENDPOINTS.items()}
_SECRET_PARAMS = frozenset({QUERY_TOKEN_PARAM, "client_secret"})
_UNAUTHORIZED = {"Message": "Authorization has been denied for this request."}
_GATEWAY_PAGE = (
    "<html><head><title>{code} {phrase}</title></head><body><center><h1>{code} {phrase}"
    "</h1></center><hr><center>nginx</center></body></html>"
)


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


class _Server(ThreadingHTTPServer):
    """Threading HTTP server that can cut its open connections when stopped."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], sandbox: Sandbox) -> None:
        super().__init__(address, _Handler)
        self.sandbox = sandbox
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that hang up mid-answer are part of the tests, not server faults.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError | TimeoutError):
            logger.debug("client %s went away: %r", client_address, error)
            return
        logger.exception("sandbox request from %s failed", client_address)

    def close_connections(self) -> None:
        # Kept-alive client connections would otherwise outlive the stopped sandbox.
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 120
    server: _Server

    def do_GET(self) -> None:
        self._route()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # The default logs the query string, which may hold a token; the path alone is safe.
        logger.debug("%s %s -> %s", self.command, urlsplit(self.path).path, code)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("sandbox: " + format, *args)

    def _route(self) -> None:
        started = time.time()
        url = urlsplit(self.path)
        path, lower = url.path, url.path.lower()
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))

        self._entry: LoggedRequest | None = None
        if lower.startswith(control.PREFIX):
            route = url.path[len(control.PREFIX) :]
            status, answer = control.handle(
                self.server.sandbox, self.command, route, lowered(params), body
            )
            self._send(status, _json(answer))
            return

        endpoint = UNKNOWN
        if lower.rstrip("/") == TOKEN_PATH:
            endpoint = TOKEN
        elif lower.startswith(API_PREFIX):
            endpoint = _PATHS.get(lower[len(API_PREFIX) :].strip("/"), UNKNOWN)
        logged = {k: "***" if k.lower() in _SECRET_PARAMS else v for k, v in params.items()}
        self._entry = LoggedRequest(started, self.command, path, endpoint, logged, status=0)

        if endpoint == TOKEN:
            self._token(body)
        elif endpoint != UNKNOWN:
            self._list(endpoint, params)
        else:
            self._send(404, _json({"Message": f"No resource matches {path}."}))

    def _record(self, status: int) -> None:
        # Logged before the answer goes out, so a client that has it sees it counted.
        if self._entry is not None:
            self.server.sandbox.recorder.log(replace(self._entry, status=status))
            self._entry = None

    def _token(self, body: bytes) -> int:
        sandbox = self.server.sandbox
        decision = sandbox.faults.decide(TOKEN)
        if (answered := self._apply_faults(decision)) is not None:
            return answered

        truncate = decision.answer  # only a truncate switch gets this far
        if self.command != "POST":
            return self._send(405, _json({"error": "invalid_request"}), truncate)
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if not sandbox.tokens.client_matches(self.headers.get("Authorization"), form):
            return self._send(401, _json({"error": "invalid_client"}), truncate)
        if form.get("grant_type") != "client_credentials":
            return self._send(400, _json({"error": "unsupported_grant_type"}), truncate)

        grant = {
            "access_token": sandbox.tokens.issue(),
            "token_type": "bearer",
            "expires_in": sandbox.tokens.expires_in,
        }
        return self._send(200, _json(grant), truncate, {"Cache-Control": "no-store"})

    def _list(self, name: str, params: dict[str, str]) -> int:
        sandbox = self.server.sandbox
        decision = sandbox.faults.decide(name)
        if decision.revoke:
            sandbox.tokens.revoke_all()
        if (answered := self._apply_faults(decision)) is not None:
            return answered
        status, body = self._page(name, params, decision)

        # Records "created while the sync runs": missing from this page, there for the next.
        for rule in decision.inserts:
            for _ in range(int(rule.options["records"])):
                sandbox.data.insert(name, None, rule.options["created"])
        return self._send(status, body, truncate=decision.answer)

    def _page(self, name: str, params: dict[str, str], decision: Decision) -> tuple[int, bytes]:
        sandbox = self.server.sandbox
        keyed = lowered(params)
        if QUERY_TOKEN_PARAM in keyed:
            sandbox.recorder.query_token_attempt()
            message = f"'{QUERY_TOKEN_PARAM}' in the query is refused here: send a Bearer header"
            return 401, _json({"Message": message})

        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not sandbox.tokens.is_live(token.strip()):
            return 401, _json(_UNAUTHORIZED)

        table = sandbox.data.table(name)
        try:
            query = list_query(table.endpoint, keyed)
        except BadParams as e:
            return 400, _json({"Message": str(e)})
        if decision.ignore_from:
            query = replace(query, cursor=None)
        if decision.widen_s:
            widen = round(decision.widen_s * TICKS_PER_SECOND)
            query = replace(
                query,
                lo=None if query.lo is None else query.lo - widen,
                hi=None if query.hi is None else query.hi + widen,
            )
        return 200, b"[" + b",".join(table.page(query)) + b"]"

    def _apply_faults(self, decision: Decision) -> int | None:
        """Delay as the switches say; the status sent if a switch answered instead."""
        pause = decision.latency_s + decision.delay_s
        if pause > 0:
            time.sleep(pause)
        if decision.hold is not None:
            self.server.sandbox.faults.wait_held(decision.hold)

        answer = decision.answer
        if answer is None or answer.kind == "truncate":
            return None
        if answer.kind == "drop":
            self._record(0)
            self.close_connection = True
            return 0
        if answer.kind == "object_body":
            return self._send(200, _json({"Message": answer.options["message"]}))
        return self._send_status(answer)

    def _send_status(self, rule: Rule) -> int:
        code = int(rule.options["code"])
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        headers: dict[str, str] = {}
        if rule.options.get("retry_after") is not None:
            headers["Retry-After"] = f"{float(rule.options['retry_after']):g}"
        if code == 429:
            headers |= {"X-RateLimit-Limit": "100", "X-RateLimit-Remaining": "0"}

        # Gateways in front of the API answer with their own HTML pages.
        if code in (502, 503, 504):
            page = _GATEWAY_PAGE.format(code=code, phrase=phrase).encode()
            return self._send(code, page, None, headers, "text/html")
        return self._send(code, _json({"Message": phrase}), None, headers)

    def _send(
        self,
        status: int,
        body: bytes,
        truncate: Rule | None = None,
        headers: dict[str, str] | None = None,
        content_type: str = JSON_TYPE,
    ) -> int:
        self._record(status)
        length = len(body)
        if truncate is not None:
            body = body[: len(body) // 2]
            length = len(body) if truncate.options["length_matches"] else length
            self.close_connection = True

        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        return status


class Sandbox:
    """A fake Billwerk on 127.0.0.1, serving `data` until stopped.

    The API is under `{url}/api/v1/`, the token endpoint at `{url}/oauth/token/`, the
    control API at `{url}/_sandbox/`. Use it as a context manager, or call `start()` and
    `stop()`. Records inserted or removed at runtime change `data` itself.
    """

    def __init__(
        self,
        data: SandboxData | None = None,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0,
        token_ttl_s: float = 3600,
        fault_seed: int = 0,
    ) -> None:
        self.data = data if data is not None else generate()
        self.tokens = Tokens(client_id, client_secret, token_ttl_s)
        self.faults = Faults(seed=fault_seed, latency_ms=latency_ms)
        self.recorder = Recorder()
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Sandbox:
        server = _Server(self._address, self)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        logger.info("Billwerk sandbox serving at %s", self.url)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self.faults.release()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            msg = "the sandbox is not running; call start() or use it in a with block"
            raise RuntimeError(msg)
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The host root, e.g. `http://127.0.0.1:8765`."""
        return f"http://{self._address[0]}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.url}{API_PREFIX}"

    @property
    def token_url(self) -> str:
        return f"{self.url}{TOKEN_PATH}/"

    @property
    def stats(self) -> Stats:
        return self.recorder.snapshot(self.tokens.issued)

    def reset_stats(self) -> None:
        """Clear counters and the request log; issued tokens stay remembered."""
        self.recorder.reset()

    def ids(self, name: str, date_from: str | None = None, date_to: str | None = None) -> set[str]:
        """The Ids the API currently lists for `name`, within an optional window."""
        return set(self.data.ids(name, date_from, date_to))

    def insert(self, name: str, record: Record | None = None, created: str | None = None) -> Record:
        """Add a record (generated when `record` is None) with a new, highest Id."""
        return self.data.insert(name, record, created)

    def update(self, name: str, record: Record) -> bool:
        """Edit a record in place (its Id and creation time stay)."""
        return self.data.update(name, record)

    def remove(self, name: str, record_id: str) -> bool:
        return self.data.remove(name, record_id)
