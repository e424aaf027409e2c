"""The bound: every page the project fetches, read with plain `requests` and nothing else.

One token, then each windowed endpoint over the same single window a range run asks for,
paged exactly as `FromCursorPaginator` pages: `take` 500, the next page `from` the last Id,
the repeated first record dropped, a short page the last. Bodies are parsed as JSON and
thrown away; no loading, no bookkeeping. Whatever the materialization takes beyond this
is the pipeline's own cost.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import requests

from billwerk_dagster.billwerk.auth import TOKEN_PATH
from billwerk_dagster.billwerk.client import API_PATH
from billwerk_dagster.billwerk.endpoints import (
    CURSOR_PARAM,
    DATE_FROM_PARAM,
    DATE_TO_PARAM,
    MAX_PAGE_SIZE,
    PAGE_SIZE_PARAM,
    PRIMARY_KEY,
    WINDOWED_ENDPOINTS,
    Endpoint,
)
from billwerk_dagster.billwerk.window import Window

TIMEOUT = (10.0, 60.0)


@dataclass
class FetchResult:
    seconds: float = 0.0
    records: dict[str, int] = field(default_factory=dict)
    pages: dict[str, int] = field(default_factory=dict)


def plain_fetch(
    url: str,
    client_id: str,
    client_secret: str,
    window: Window,
    page_size: int = MAX_PAGE_SIZE,
) -> FetchResult:
    """Fetch every windowed endpoint's pages in `window`, sequentially; time the whole."""
    result = FetchResult()
    started = time.perf_counter()
    with requests.Session() as session:
        session.trust_env = False  # the sandbox is local: no proxy in between
        token = _token(session, url, client_id, client_secret)
        session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})

        for endpoint in WINDOWED_ENDPOINTS:
            records, pages = _fetch_endpoint(session, url, endpoint, window, page_size)
            result.records[endpoint.name] = records
            result.pages[endpoint.name] = pages
    result.seconds = time.perf_counter() - started
    return result


def _token(session: requests.Session, url: str, client_id: str, client_secret: str) -> str:
    form = {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_secret": client_secret,
    }
    response = session.post(f"{url}/{TOKEN_PATH}", data=form, timeout=TIMEOUT)
    response.raise_for_status()
    return str(response.json()["access_token"])


def _fetch_endpoint(
    session: requests.Session, url: str, endpoint: Endpoint, window: Window, page_size: int
) -> tuple[int, int]:
    params: dict[str, str | int] = {
        DATE_FROM_PARAM: window.date_from,
        DATE_TO_PARAM: window.date_to,
        PAGE_SIZE_PARAM: page_size,
    }
    records = pages = 0
    cursor: str | None = None
    while True:
        if cursor is not None:
            params[CURSOR_PARAM] = cursor
        response = session.get(f"{url}/{API_PATH}{endpoint.path}", params=params, timeout=TIMEOUT)
        response.raise_for_status()
        page = json.loads(response.content)
        pages += 1

        received = len(page)
        if cursor is not None and page and page[0][PRIMARY_KEY] == cursor:
            del page[0]
        records += len(page)
        if received < page_size:
            return records, pages
        cursor = str(page[-1][PRIMARY_KEY])
