"""The `from`-cursor paginator on its own: next request, end of list, the repeated record,
and a server that ignores the cursor. Pages are handed to it as dlt's client would."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import pytest
from requests import Request, Response

from billwerk_dagster.billwerk.errors import BillwerkResponseError
from billwerk_dagster.billwerk.paging import FromCursorPaginator
from billwerk_dagster.billwerk.window import Window


def _response(url: str = "http://127.0.0.1/api/v1/invoices") -> Response:
    response = Response()
    response.status_code = 200
    response.request = Request("GET", url).prepare()
    return response


def _ids(*ids: int) -> list[dict[str, Any]]:
    return [{"Id": f"{i:024x}"} for i in ids]


def _walk(all_ids: list[int], page_size: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Page through a newest-first list the way the API does; return ids seen and requests."""
    paginator = FromCursorPaginator(page_size)
    request = Request("GET", "http://127.0.0.1/api/v1/invoices", params={})
    paginator.init_request(request)
    newest_first = sorted(all_ids, reverse=True)
    seen: list[str] = []
    requests_made: list[dict[str, Any]] = []
    while True:
        requests_made.append(dict(request.params))
        cursor = request.params.get("from")
        rows = [i for i in newest_first if cursor is None or f"{i:024x}" <= cursor]
        page = _ids(*rows[: request.params["take"]])
        paginator.update_state(_response(), page)
        paginator.update_request(request)
        seen.extend(r["Id"] for r in page)
        if not paginator.has_next_page:
            return seen, requests_made


@pytest.mark.parametrize("count", [0, 1, 4, 5, 6, 9, 10, 23])
def test_every_record_is_seen_once_across_page_edges(count: int) -> None:
    seen, _ = _walk(list(range(1, count + 1)), page_size=5)
    assert seen == [f"{i:024x}" for i in range(count, 0, -1)]


def test_next_request_asks_from_the_last_id_and_never_skips() -> None:
    _, requests_made = _walk(list(range(1, 13)), page_size=5)
    assert requests_made[0] == {"take": 5}
    assert requests_made[1] == {"take": 5, "from": f"{8:024x}"}
    assert all("skip" not in r for r in requests_made)


def test_a_deleted_cursor_record_does_not_drop_the_next_one() -> None:
    paginator = FromCursorPaginator(3)
    paginator.update_state(_response(), _ids(9, 8, 7))
    page = _ids(6, 5, 4)  # record 7 was deleted between the two requests
    paginator.update_state(_response(), page)
    assert [r["Id"] for r in page] == [f"{i:024x}" for i in (6, 5, 4)]
    assert paginator.has_next_page


def test_a_server_ignoring_the_cursor_is_an_error_not_a_loop() -> None:
    paginator = FromCursorPaginator(3)
    paginator.update_state(_response(), _ids(9, 8, 7))
    with pytest.raises(
        BillwerkResponseError, match=r"/api/v1/invoices .*does not honour the cursor"
    ):
        paginator.update_state(_response(), _ids(9, 8, 7))


def test_window_bounds_are_inclusive_to_the_last_tick_of_the_day() -> None:
    from datetime import datetime

    window = Window(datetime(2024, 1, 31, tzinfo=UTC), datetime(2024, 2, 1, tzinfo=UTC))
    assert window.date_from == "2024-01-31T00:00:00.0000000Z"
    assert window.date_to == "2024-01-31T23:59:59.9999999Z"
