"""Paging through a Billwerk list with the inclusive `from` cursor.

Billwerk lists come newest first. `skip` is capped at 1000 upstream and shifts when records
are added, so it is never used. Instead each next page asks for `from` = the Id of the last
record received; the API includes that record again as the first of the new page, and the
paginator drops it. Records created during the sync are newer than the cursor and so never
shift a page; records sharing one timestamp are told apart by Id.
"""

from __future__ import annotations

from typing import Any, cast

from dlt.sources.helpers.rest_client.paginators import BasePaginator
from requests import Request, Response

from billwerk_dagster.billwerk.endpoints import CURSOR_PARAM, PAGE_SIZE_PARAM, PRIMARY_KEY
from billwerk_dagster.billwerk.errors import BillwerkResponseError


class FromCursorPaginator(BasePaginator):
    """Builds the next request from the last Id seen and says whether there is more.

    A page shorter than `page_size` is the last one. The first record of every page after
    the first must be the requested cursor record: a server that ignores `from` would
    otherwise make the sync loop forever or skip records, so that is an error.
    """

    def __init__(self, page_size: int) -> None:
        super().__init__()
        self.page_size = page_size
        self.cursor: str | None = None

    def init_request(self, request: Request) -> None:
        _params(request)[PAGE_SIZE_PARAM] = self.page_size

    def update_state(self, response: Response, data: list[Any] | None = None) -> None:
        page = data if data is not None else []
        received = len(page)
        if self.cursor is not None and page:
            self._drop_repeated_record(response, page)

        if received < self.page_size or not page:
            self._has_next_page = False
        else:
            self.cursor = str(page[-1][PRIMARY_KEY])

    def update_request(self, request: Request) -> None:
        _params(request)[CURSOR_PARAM] = self.cursor

    def _drop_repeated_record(self, response: Response, page: list[Any]) -> None:
        # Ids order like creation time, and lists run newest first, so a page may begin
        # with the cursor record itself, or with an older one when the cursor record was
        # deleted meanwhile; a newer one means the server ignored `from`.
        assert self.cursor is not None
        first = str(page[0].get(PRIMARY_KEY))
        if first > self.cursor:
            raise BillwerkResponseError(
                f"Billwerk answered {response.request.path_url.split('?')[0]} with a page "
                f"starting at {first!r}, newer than the requested {CURSOR_PARAM}="
                f"{self.cursor!r}. The server does not honour the cursor; stopping instead "
                "of looping or loading records twice."
            )
        if first == self.cursor:
            # The page list is the one dlt yields next: dropping here keeps the repeated
            # record out of the load.
            del page[0]

    def __str__(self) -> str:
        return f"{type(self).__name__}(page_size={self.page_size}, cursor={self.cursor!r})"


def _params(request: Request) -> dict[str, Any]:
    # dlt's client always builds the request with a params dict.
    return cast(dict[str, Any], request.params)
