"""Read and check the query parameters of a list request, as the API does.

The parameter names come from the endpoint table. Two facts the table does not hold live
here: the offset parameter `skip` and its cap of 1000, and the page size the API uses
when `take` is left out. Names are matched without regard to case, like the .NET API.
"""

from __future__ import annotations

import re

from billwerk_dagster.billwerk.endpoints import (
    CURSOR_PARAM,
    DATE_FROM_PARAM,
    DATE_TO_PARAM,
    MAX_PAGE_SIZE,
    PAGE_SIZE_PARAM,
    Endpoint,
)
from billwerk_dagster.sandbox.formats import parse_timestamp
from billwerk_dagster.sandbox.store import Query

SKIP_PARAM = "skip"
MAX_SKIP = 1000
DEFAULT_PAGE_SIZE = 100
QUERY_TOKEN_PARAM = "access_token"

_OBJECT_ID = re.compile(r"[0-9a-f]{24}")


class BadParams(ValueError):
    """A parameter the API answers with 400."""


def lowered(params: dict[str, str]) -> dict[str, str]:
    """The parameters keyed by lower-case name."""
    return {key.lower(): value for key, value in params.items()}


def list_query(endpoint: Endpoint, params: dict[str, str]) -> Query:
    """The validated filters of one list request; `params` keyed by lower-case name.

    `dateFrom` / `dateTo` only filter windowed endpoints; elsewhere they are ignored,
    as are parameters the API does not know.
    """
    take = _integer(params, PAGE_SIZE_PARAM, DEFAULT_PAGE_SIZE)
    if not 1 <= take <= MAX_PAGE_SIZE:
        msg = f"'{PAGE_SIZE_PARAM}' must be between 1 and {MAX_PAGE_SIZE}, got {take}"
        raise BadParams(msg)
    skip = _integer(params, SKIP_PARAM, 0)
    if not 0 <= skip <= MAX_SKIP:
        msg = f"'{SKIP_PARAM}' must be between 0 and {MAX_SKIP}, got {skip}"
        raise BadParams(msg)

    cursor = params.get(CURSOR_PARAM.lower())
    if cursor is not None:
        cursor = cursor.lower()
        if not _OBJECT_ID.fullmatch(cursor):
            msg = f"'{CURSOR_PARAM}' must be a record Id of 24 hex digits, got {cursor!r}"
            raise BadParams(msg)

    lo = hi = None
    if endpoint.windowed:
        lo = _timestamp(params, DATE_FROM_PARAM)
        hi = _timestamp(params, DATE_TO_PARAM)
    return Query(take=take, skip=skip, cursor=cursor, lo=lo, hi=hi)


def _integer(params: dict[str, str], name: str, default: int) -> int:
    raw = params.get(name.lower())
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        msg = f"'{name}' must be an integer, got {raw!r}"
        raise BadParams(msg) from None


def _timestamp(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name.lower())
    if raw is None:
        return None
    try:
        return parse_timestamp(raw)
    except ValueError as e:
        raise BadParams(f"'{name}': {e}") from e
