"""The Billwerk layer's exceptions: one small family, each message says what to fix."""

from __future__ import annotations

BODY_EXCERPT_CHARS = 300


def excerpt(text: str, limit: int = BODY_EXCERPT_CHARS) -> str:
    """Trim a response body for an error message, on one line."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit] + "..."


class BillwerkError(Exception):
    """Anything that stops a Billwerk sync."""


class BillwerkConfigError(BillwerkError):
    """A setting is missing or malformed; the message names the environment variable."""


class BillwerkAuthError(BillwerkError):
    """The token endpoint refused the client credentials or could not issue a token."""


class BillwerkApiError(BillwerkError):
    """An API request failed for good: after the retries, or with a non-transient status."""


class BillwerkResponseError(BillwerkError):
    """The API answered something a list endpoint never should: not JSON, not a list, or a
    page that does not start at the requested cursor."""


def find_billwerk_error(error: BaseException) -> BillwerkError | None:
    """Our error inside the wrappers dlt puts around whatever a source raises."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, BillwerkError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None
