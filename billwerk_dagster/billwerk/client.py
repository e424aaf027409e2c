"""How we talk HTTP to Billwerk: dlt's REST client, retrying session and auth, configured.

dlt brings the paging loop, the retrying session (429, 5xx, dropped connections, with
exponential backoff that honours `Retry-After`) and OAuth2. What Billwerk needs on top:
bodies parsed fast (orjson), a 200 with a body cut short counted as a
transient fault, one request rate for the whole sync, and errors that name the endpoint and
the setting to fix.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from dlt.common import jsonpath
from dlt.sources.helpers.requests.retry import Client
from dlt.sources.helpers.rest_client import RESTClient
from requests import HTTPError, PreparedRequest, Response
from requests.adapters import HTTPAdapter

from billwerk_dagster.billwerk.auth import TOKEN_PATH, BillwerkOAuth2
from billwerk_dagster.billwerk.concurrency import RateLimiter
from billwerk_dagster.billwerk.endpoints import MAX_PAGE_SIZE
from billwerk_dagster.billwerk.errors import BillwerkConfigError, BillwerkResponseError, excerpt

logger = logging.getLogger(__name__)

API_PATH = "api/v1/"
LEGAL_ENTITY_HEADER = "X-SELECTED-LEGAL-ENTITY-ID"
MIN_PAGE_SIZE = 2  # the `from` cursor repeats one record per page, so 1 would never advance
DEFAULT_WORKERS = 4
MAX_WORKERS = 16  # more threads would only queue at the rate limit
DEFAULT_MAX_REQUESTS_PER_SECOND = 20.0
# Connections kept open per host, as dlt's Client keeps: enough for every worker of both
# windowed endpoints at once.
POOL_SIZE = 50

# The parsed body rides on the response from the retry check to the page extraction.
_PARSED = "_billwerk_parsed_body"


@dataclass(frozen=True)
class BillwerkConnection:
    """Everything needed to reach one Billwerk account. Validated on creation."""

    base_url: str
    client_id: str
    client_secret: str = field(repr=False)
    legal_entity_id: str | None = None
    page_size: int = MAX_PAGE_SIZE
    workers: int = DEFAULT_WORKERS
    max_requests_per_second: float = DEFAULT_MAX_REQUESTS_PER_SECOND
    connect_timeout_seconds: float = 10.0
    read_timeout_seconds: float = 60.0
    max_attempts: int = 6
    backoff_seconds: float = 10.0
    max_backoff_seconds: float = 120.0

    def __post_init__(self) -> None:
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise BillwerkConfigError(
                f"BILLWERK_BASE_URL must be an http(s) URL such as "
                f"https://sandbox.billwerk.com, got {self.base_url!r}."
            )
        if not MIN_PAGE_SIZE <= self.page_size <= MAX_PAGE_SIZE:
            raise BillwerkConfigError(
                f"BILLWERK_PAGE_SIZE must be between {MIN_PAGE_SIZE} and {MAX_PAGE_SIZE} "
                f"(Billwerk's maximum `take`), got {self.page_size}."
            )
        if not 1 <= self.workers <= MAX_WORKERS:
            raise BillwerkConfigError(
                f"BILLWERK_WORKERS must be between 1 (one request at a time) and {MAX_WORKERS}, "
                f"got {self.workers}."
            )
        if not (math.isfinite(self.max_requests_per_second) and self.max_requests_per_second > 0):
            raise BillwerkConfigError(
                "BILLWERK_MAX_REQUESTS_PER_SECOND must be a number above 0 (Billwerk's rate "
                f"limit for your account, or lower), got {self.max_requests_per_second}."
            )
        for name, value in (
            ("BILLWERK_CLIENT_ID", self.client_id),
            ("BILLWERK_CLIENT_SECRET", self.client_secret),
        ):
            if not value:
                raise BillwerkConfigError(f"{name} is empty: set it to your OAuth client's value.")
        if self.max_attempts < 1:
            raise BillwerkConfigError(f"max_attempts must be at least 1, got {self.max_attempts}.")

    @property
    def host(self) -> str:
        return self.base_url.rstrip("/")

    @property
    def api_url(self) -> str:
        return f"{self.host}/{API_PATH}"

    @property
    def token_url(self) -> str:
        # The token endpoint sits beside the API, not under /api/v1/.
        return f"{self.host}/{TOKEN_PATH}"


def parse_body(response: Response) -> Any:
    """The JSON body, parsed once. Numbers with a fraction are floats here; `tables` turns
    them into exact decimals (see `tables._decimals`)."""
    if not hasattr(response, _PARSED):
        setattr(response, _PARSED, orjson.loads(response.content))
    return getattr(response, _PARSED)


def body_is_cut_short(response: Response | None, exception: BaseException | None) -> bool:
    """Retry predicate: a 200 whose JSON does not parse was cut off on the way."""
    if response is None or response.status_code != 200:
        return False
    try:
        parse_body(response)
    except ValueError:
        logger.warning("Billwerk sent an unreadable JSON body (cut short?); retrying")
        return True
    return False


class BillwerkClient(RESTClient):
    """dlt's REST client with Billwerk's body parsing and checks."""

    def extract_response(self, response: Response, data_selector: jsonpath.TJsonPath) -> list[Any]:
        path = urlsplit(response.url).path
        try:
            body = parse_body(response)
        except ValueError:
            raise BillwerkResponseError(
                f"Billwerk answered {path} with a body that is not valid JSON, also after "
                f"retrying: {excerpt(response.text)}"
            ) from None
        if not isinstance(body, list):
            raise BillwerkResponseError(
                f"Billwerk answered {path} with JSON that is not a list: "
                f"{excerpt(response.text)}. List endpoints answer a bare array; check that "
                "BILLWERK_BASE_URL is the Billwerk host (the API lives under /api/v1/)."
            )
        return body


def raise_for_status(response: Response, *args: Any, **kwargs: Any) -> None:
    """Response hook: an HTTPError for every error status, so the retry can see it.

    dlt's own hook does the same; ours keeps the body short and on one line.
    """
    if response.status_code >= 400:
        path = urlsplit(response.url).path
        raise HTTPError(
            f"HTTP {response.status_code} from {path}: {excerpt(response.text)}",
            response=response,
        )


class RateLimitedAdapter(HTTPAdapter):
    """The transport every request of a sync goes out through, paced by one `RateLimiter`.

    Pacing here, below the session, catches everything: retries (they call the session's
    `send` again), the token request and the re-send after a 401 (which goes straight to
    the adapter), from any thread.
    """

    def __init__(self, limiter: RateLimiter) -> None:
        super().__init__(pool_maxsize=POOL_SIZE)
        self.limiter = limiter

    def send(self, request: PreparedRequest, *args: Any, **kwargs: Any) -> Response:
        self.limiter.wait()
        return super().send(request, *args, **kwargs)


def build_client(connection: BillwerkConnection) -> BillwerkClient:
    """A client for one sync: one retrying session, one token and one request rate shared by
    all endpoints and all their threads."""
    # dlt's Client hands out a session per thread; taking one here and passing it on keeps
    # a single session, and so a single adapter and rate, for the worker threads too. Sharing
    # it is safe here: Billwerk sets no cookies, and the adapter's connection pool is locked.
    session = Client(
        request_timeout=(connection.connect_timeout_seconds, connection.read_timeout_seconds),
        raise_for_status=False,
        request_max_attempts=connection.max_attempts,
        request_backoff_factor=connection.backoff_seconds,
        request_max_retry_delay=connection.max_backoff_seconds,
        respect_retry_after_header=True,
        retry_condition=body_is_cut_short,
    ).session
    adapter = RateLimitedAdapter(RateLimiter(connection.max_requests_per_second))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    auth = BillwerkOAuth2(
        access_token_url=connection.token_url,
        client_id=connection.client_id,
        client_secret=connection.client_secret,
        session=session,
    )
    headers = {"Accept": "application/json"}
    if connection.legal_entity_id:
        headers[LEGAL_ENTITY_HEADER] = connection.legal_entity_id
    return BillwerkClient(base_url=connection.api_url, headers=headers, auth=auth, session=session)
