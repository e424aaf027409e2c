"""The local fake Billwerk behaves like the API described in shared/BILLWERK_API.md.

Covers the token grant, bearer-only auth, newest-first lists, the inclusive `from` cursor
across a same-timestamp billing run longer than a page, inclusive date windows at the
23:59:59.9999999 edge, the skip and take caps, every fault switch, runtime inserts and
removals, the generated data itself, and the sandbox run as its own process.
Everything goes over real HTTP to 127.0.0.1 with small data sets.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from billwerk_dagster.billwerk.endpoints import (
    CONTRACTS,
    CURSOR_PARAM,
    CUSTOMERS,
    DATE_FROM_PARAM,
    DATE_TO_PARAM,
    ENDPOINTS,
    INVOICES,
    MAX_PAGE_SIZE,
    ORDERS,
    PAGE_SIZE_PARAM,
    PRIMARY_KEY,
)
from billwerk_dagster.sandbox import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    Sandbox,
    SandboxClient,
    SandboxData,
    generate,
)
from billwerk_dagster.sandbox.params import MAX_SKIP, QUERY_TOKEN_PARAM, SKIP_PARAM
from billwerk_dagster.sandbox.records import CONTRACT_ID, CUSTOMER_ID
from billwerk_dagster.sandbox.store import Query, Table

CLIENT_ID = "test-client"
CLIENT_SECRET = "test-secret-äö"
REPO_ROOT = Path(__file__).resolve().parents[1]
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z")


def small_data() -> SandboxData:
    # 45 days from 2024-01-01 hold one month end, so one billing run of 700 invoices.
    return generate(seed=7, days=45, customers=40, contracts=60, invoices=1500, orders=200)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(small_data(), client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sb:
        yield sb


@pytest.fixture
def sb(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The shared read-only sandbox, with switches and counters clean for each test."""
    sandbox.faults.clear()
    sandbox.reset_stats()
    yield sandbox
    sandbox.faults.clear()


@pytest.fixture
def fresh() -> Iterator[Sandbox]:
    """A sandbox of its own, for tests that change records."""
    with Sandbox(small_data(), client_id=CLIENT_ID, client_secret=CLIENT_SECRET) as sb:
        yield sb


def new_session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy from the environment in front of 127.0.0.1
    return session


def grant(sb: Sandbox, secret: str = CLIENT_SECRET) -> requests.Response:
    with new_session() as session:
        form = {"grant_type": "client_credentials", "client_id": CLIENT_ID}
        return session.post(sb.token_url, data={**form, "client_secret": secret}, timeout=5)


@pytest.fixture
def api(sb: Sandbox) -> Iterator[requests.Session]:
    """A session holding a live bearer token for the shared sandbox."""
    with new_session() as session:
        session.headers["Authorization"] = f"Bearer {grant(sb).json()['access_token']}"
        yield session


def authorized(sb: Sandbox) -> requests.Session:
    session = new_session()
    session.headers["Authorization"] = f"Bearer {grant(sb).json()['access_token']}"
    return session


def get(session: requests.Session, sb: Sandbox, path: str, **params: Any) -> requests.Response:
    return session.get(f"{sb.api_url}{path}", params=params, timeout=10)


def walk(session: requests.Session, sb: Sandbox, path: str, **params: Any) -> list[str]:
    """Every Id of a list, read with the `from` cursor in pages of the maximum size."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        extra = {} if cursor is None else {CURSOR_PARAM: cursor}
        page = get(session, sb, path, **{PAGE_SIZE_PARAM: MAX_PAGE_SIZE, **params, **extra})
        assert page.status_code == 200, page.text
        records = page.json()
        if cursor is not None:
            # The page starts at the cursor record itself.
            assert records[0][PRIMARY_KEY] == cursor
            records = records[1:]
        if not records:
            return ids
        ids += [record[PRIMARY_KEY] for record in records]
        cursor = ids[-1]


def day_window(day: Any) -> dict[str, str]:
    return {
        DATE_FROM_PARAM: f"{day.isoformat()}T00:00:00.0000000Z",
        DATE_TO_PARAM: f"{day.isoformat()}T23:59:59.9999999Z",
    }


# Tokens


def test_token_granted_for_right_credentials_in_form_or_basic_auth(sb: Sandbox) -> None:
    answer = grant(sb)
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    assert len(body["access_token"]) >= 40

    with new_session() as session:
        basic = session.post(
            sb.token_url.rstrip("/"),
            data={"grant_type": "client_credentials"},
            auth=(CLIENT_ID, CLIENT_SECRET),
            timeout=5,
        )
    assert basic.status_code == 200
    assert basic.json()["access_token"] != body["access_token"]
    assert sb.stats.token_requests == 2
    assert set(sb.stats.tokens_issued) >= {body["access_token"], basic.json()["access_token"]}


def test_token_denied_for_wrong_secret(sb: Sandbox) -> None:
    answer = grant(sb, secret="wrong")
    assert answer.status_code == 401
    assert answer.json() == {"error": "invalid_client"}
    assert sb.stats.token_requests == 1 and sb.stats.token_denied == 1


def test_list_needs_a_live_bearer_token(sb: Sandbox) -> None:
    with new_session() as session:
        assert get(session, sb, INVOICES.path).status_code == 401
        session.headers["Authorization"] = "Bearer not-a-token"
        assert get(session, sb, INVOICES.path).status_code == 401
    assert sb.stats.unauthorized == 2


def test_token_in_query_string_is_refused_and_recorded(sb: Sandbox) -> None:
    token = grant(sb).json()["access_token"]
    with new_session() as session:
        answer = get(session, sb, INVOICES.path, **{QUERY_TOKEN_PARAM: token})
    assert answer.status_code == 401
    assert sb.stats.query_token_attempts == 1
    # The log keeps the request but never the token itself.
    assert token not in json.dumps(sb.stats.to_dict()["log"])


def test_expired_token_is_refused() -> None:
    with Sandbox(small_data(), token_ttl_s=0.2) as sb, new_session() as session:
        form = {"grant_type": "client_credentials"}
        token = session.post(
            sb.token_url, data=form, auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET), timeout=5
        ).json()["access_token"]
        session.headers["Authorization"] = f"Bearer {token}"
        assert get(session, sb, ORDERS.path).status_code == 200
        time.sleep(0.3)
        assert get(session, sb, ORDERS.path).status_code == 401


# Lists


def test_lists_are_bare_arrays_newest_first_on_any_path_case(
    sb: Sandbox, api: requests.Session
) -> None:
    for endpoint in ENDPOINTS.values():
        for path in (endpoint.path, endpoint.path.upper(), endpoint.path.capitalize() + "/"):
            answer = get(api, sb, path, **{PAGE_SIZE_PARAM: 30})
            assert answer.status_code == 200
            assert answer.headers["Content-Type"].startswith("application/json")
            ids = [record[PRIMARY_KEY] for record in answer.json()]
            assert len(ids) == 30
            assert ids == sorted(ids, reverse=True)
            assert ids == sorted(sb.ids(endpoint.name), reverse=True)[:30]
    assert len(get(api, sb, ORDERS.path).json()) == 100  # the default page size


def test_unknown_endpoint_is_404(sb: Sandbox, api: requests.Session) -> None:
    answer = get(api, sb, "planvariantz")
    assert answer.status_code == 404
    assert "Message" in answer.json()


def test_from_cursor_walks_every_id_once_through_the_billing_run(
    sb: Sandbox, api: requests.Session
) -> None:
    ids = walk(api, sb, INVOICES.path)
    assert len(ids) == len(set(ids)) == 1500
    assert set(ids) == sb.ids(INVOICES.name)

    # The billing run alone is longer than a page, and its timestamps are all equal.
    burst_created = sb.data.edges.burst_created[0]
    window = {DATE_FROM_PARAM: burst_created, DATE_TO_PARAM: burst_created}
    burst = walk(api, sb, INVOICES.path, **window)
    assert len(burst) == len(set(burst)) == sb.data.edges.burst_size == 700
    first = get(api, sb, INVOICES.path, **window, **{CURSOR_PARAM: burst[0]}).json()
    assert {record[INVOICES.created_field] for record in first} == {burst_created}


def test_from_cursor_is_inclusive_and_a_missing_id_starts_below_it(
    sb: Sandbox, api: requests.Session
) -> None:
    ids = sorted(sb.ids(ORDERS.name), reverse=True)
    page = get(api, sb, ORDERS.path, **{CURSOR_PARAM: ids[10], PAGE_SIZE_PARAM: 3}).json()
    assert [record[PRIMARY_KEY] for record in page] == ids[10:13]

    # An Id that is not there (say, deleted) still places the page: below it.
    missing = ids[10][:-1] + ("0" if ids[10][-1] != "0" else "1")
    below = [i for i in ids if i <= missing][:3]
    page = get(api, sb, ORDERS.path, **{CURSOR_PARAM: missing, PAGE_SIZE_PARAM: 3}).json()
    assert [record[PRIMARY_KEY] for record in page] == below


def test_window_bounds_are_inclusive_at_the_last_tick_of_a_day(
    sb: Sandbox, api: requests.Session
) -> None:
    edges = sb.data.edges
    day, next_day = edges.last_tick_day, edges.last_tick_day + timedelta(days=1)

    records = get(api, sb, INVOICES.path, **day_window(day), take=MAX_PAGE_SIZE).json()
    created = [record[INVOICES.created_field] for record in records]
    assert created[0] == edges.last_tick_created == f"{day}T23:59:59.9999999Z"
    assert edges.first_tick_created not in created

    following = get(api, sb, INVOICES.path, **day_window(next_day), take=MAX_PAGE_SIZE).json()
    assert following[-1][INVOICES.created_field] == edges.first_tick_created

    # A bound with six digits, or none, stops a tick short and loses the record.
    for short in ("23:59:59.999999", "23:59:59"):
        window = {DATE_FROM_PARAM: str(day), DATE_TO_PARAM: f"{day}T{short}Z"}
        assert len(walk(api, sb, INVOICES.path, **window)) == len(records) - 1
    # A bare date is midnight, so it starts a window at the first tick of that day.
    window = {DATE_FROM_PARAM: str(next_day), DATE_TO_PARAM: edges.first_tick_created}
    assert len(walk(api, sb, INVOICES.path, **window)) == 1


def test_window_days_match_the_edges_the_data_reports(sb: Sandbox, api: requests.Session) -> None:
    edges = sb.data.edges
    assert walk(api, sb, INVOICES.path, **day_window(edges.empty_day)) == []
    assert len(walk(api, sb, INVOICES.path, **day_window(edges.single_day))) == 1
    burst_day = walk(api, sb, INVOICES.path, **day_window(edges.burst_days[0]))
    assert len(burst_day) > edges.burst_size
    assert set(burst_day) == sb.ids(INVOICES.name, **_window_kwargs(edges.burst_days[0]))

    window = day_window(edges.window_start)
    assert walk(api, sb, ORDERS.path, **window) == sorted(
        sb.ids(ORDERS.name, window[DATE_FROM_PARAM], window[DATE_TO_PARAM]), reverse=True
    )


def _window_kwargs(day: Any) -> dict[str, str]:
    window = day_window(day)
    return {"date_from": window[DATE_FROM_PARAM], "date_to": window[DATE_TO_PARAM]}


@pytest.mark.parametrize(
    "params",
    [
        {PAGE_SIZE_PARAM: MAX_PAGE_SIZE + 1},
        {PAGE_SIZE_PARAM: 0},
        {PAGE_SIZE_PARAM: "ten"},
        {SKIP_PARAM: MAX_SKIP + 1},
        {SKIP_PARAM: -1},
        {CURSOR_PARAM: "not-an-object-id"},
        {DATE_FROM_PARAM: "2024-13-01"},
        {DATE_FROM_PARAM: "2024-01-01T00:00:00.12345678Z"},
        {DATE_TO_PARAM: "2024-01-01T00:00:00+01:00"},
    ],
)
def test_bad_params_are_400_with_a_message(
    sb: Sandbox, api: requests.Session, params: dict[str, Any]
) -> None:
    answer = get(api, sb, INVOICES.path, **params)
    assert answer.status_code == 400
    assert answer.json()["Message"]


def test_skip_pages_by_offset_up_to_its_cap(sb: Sandbox, api: requests.Session) -> None:
    ids = sorted(sb.ids(INVOICES.name), reverse=True)
    page = get(api, sb, INVOICES.path, **{SKIP_PARAM: MAX_SKIP, PAGE_SIZE_PARAM: 5}).json()
    assert [record[PRIMARY_KEY] for record in page] == ids[MAX_SKIP : MAX_SKIP + 5]


def test_records_carry_seven_digit_times_two_decimal_money_and_unicode(
    sb: Sandbox, api: requests.Session
) -> None:
    text = get(api, sb, INVOICES.path, take=MAX_PAGE_SIZE).content.decode("utf-8")
    for record in json.loads(text):
        assert TIMESTAMP.fullmatch(record[INVOICES.created_field])
    money = re.findall(r'"(?:TotalNet|TotalVat|TotalGross|PricePerUnit)":(-?[\d.]+)', text)
    assert money and all(re.fullmatch(r"-?\d+\.\d\d", amount) for amount in money)
    names = {r["CustomerName"] for r in get(api, sb, CUSTOMERS.path, take=100).json()}
    assert any(ch in "".join(names) for ch in "äöüßéèŁł") and not text.isascii()


# Generated data


def test_generation_is_deterministic_and_its_references_hold() -> None:
    first, second = small_data(), small_data()
    for name in ENDPOINTS:
        assert first.records(name) == second.records(name)

    customers = {c[PRIMARY_KEY] for c in first.records(CUSTOMERS.name)}
    contract_owner = {c[PRIMARY_KEY]: c[CUSTOMER_ID] for c in first.records(CONTRACTS.name)}
    assert set(contract_owner.values()) <= customers
    for invoice in first.records(INVOICES.name):
        assert contract_owner[invoice[CONTRACT_ID]] == invoice[CUSTOMER_ID]
        cents = [round(invoice[key] * 100) for key in ("TotalNet", "TotalVat", "TotalGross")]
        assert cents[0] + cents[1] == cents[2]
    for order in first.records(ORDERS.name):
        assert contract_owner[order[CONTRACT_ID]] == order[CUSTOMER_ID]


def test_generation_refuses_too_few_invoices_for_its_billing_runs() -> None:
    with pytest.raises(ValueError, match="billing runs"):
        generate(days=45, invoices=500, burst=700)


# Fault switches


def test_status_switches_answer_429_with_and_without_retry_after(
    sb: Sandbox, api: requests.Session
) -> None:
    sb.faults.status(429, retry_after=2)
    sb.faults.status(429)
    first, second = get(api, sb, ORDERS.path), get(api, sb, ORDERS.path)
    assert (first.status_code, first.headers["Retry-After"]) == (429, "2")
    assert second.status_code == 429 and "Retry-After" not in second.headers
    assert first.headers["X-RateLimit-Remaining"] == "0"
    assert get(api, sb, ORDERS.path).status_code == 200


def test_gateway_errors_come_as_html_and_500_as_json(sb: Sandbox, api: requests.Session) -> None:
    for code in (502, 503):
        sb.faults.status(code)
        answer = get(api, sb, ORDERS.path)
        assert answer.status_code == code
        assert answer.headers["Content-Type"].startswith("text/html")
        assert answer.text.startswith("<html>")
    sb.faults.status(500)
    answer = get(api, sb, ORDERS.path)
    assert answer.status_code == 500 and answer.json()["Message"]


def test_switches_target_one_endpoint_and_wait_their_turn(
    sb: Sandbox, api: requests.Session
) -> None:
    sb.faults.status(503, endpoint=ORDERS.name, after=1, count=2)
    assert get(api, sb, INVOICES.path).status_code == 200
    codes = [get(api, sb, ORDERS.path).status_code for _ in range(4)]
    assert codes == [200, 503, 503, 200]


def test_rate_switch_fails_some_requests(sb: Sandbox, api: requests.Session) -> None:
    sb.faults.status(500, rate=0.5)
    codes = [get(api, sb, ORDERS.path, take=1).status_code for _ in range(40)]
    assert 0 < codes.count(500) < 40 and set(codes) == {200, 500}


def test_drop_closes_the_connection_without_an_answer(sb: Sandbox, api: requests.Session) -> None:
    sb.faults.drop(endpoint=INVOICES.name)
    with pytest.raises(requests.ConnectionError):
        get(api, sb, INVOICES.path)
    assert get(api, sb, INVOICES.path).status_code == 200
    assert [e.status for e in sb.stats.log if e.endpoint == INVOICES.name] == [0, 200]


def test_truncated_body_is_a_short_read_or_broken_json(sb: Sandbox, api: requests.Session) -> None:
    sb.faults.truncate()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(api, sb, INVOICES.path)
    sb.faults.truncate(length_matches=True)
    answer = get(api, sb, INVOICES.path)
    assert answer.status_code == 200
    with pytest.raises(requests.exceptions.JSONDecodeError):
        answer.json()


def test_object_body_answers_200_with_a_message_object(sb: Sandbox, api: requests.Session) -> None:
    sb.faults.object_body("Something broke")
    answer = get(api, sb, CONTRACTS.path)
    assert answer.status_code == 200 and answer.json() == {"Message": "Something broke"}


def test_slow_switch_and_latency_delay_the_answer(sb: Sandbox, api: requests.Session) -> None:
    sb.faults.slow(0.3)
    started = time.perf_counter()
    assert get(api, sb, ORDERS.path, take=1).status_code == 200
    assert time.perf_counter() - started >= 0.3

    sb.faults.set_latency(150)
    started = time.perf_counter()
    get(api, sb, ORDERS.path, take=1)
    grant(sb)
    assert time.perf_counter() - started >= 0.3


def test_hold_blocks_until_released(sb: Sandbox, api: requests.Session) -> None:
    sb.faults.hold(timeout=10)
    answers: list[int] = []
    thread = threading.Thread(target=lambda: answers.append(get(api, sb, ORDERS.path).status_code))
    thread.start()
    assert sb.faults.wait_for_hold(1, timeout=5)
    assert answers == [] and sb.faults.describe()["holding"] == 1
    sb.faults.release()
    thread.join(timeout=5)
    assert answers == [200]


def test_hold_gives_up_after_its_timeout(sb: Sandbox, api: requests.Session) -> None:
    sb.faults.hold(timeout=0.2)
    started = time.perf_counter()
    assert get(api, sb, ORDERS.path, take=1).status_code == 200
    assert 0.2 <= time.perf_counter() - started < 5


def test_client_killed_while_held_leaves_the_sandbox_serving(
    sb: Sandbox, api: requests.Session
) -> None:
    sb.faults.hold(timeout=10)
    token = api.headers["Authorization"]
    fetch = (
        "import urllib.request, sys; "
        "request = urllib.request.Request(sys.argv[1], headers={'Authorization': sys.argv[2]}); "
        "urllib.request.urlopen(request, timeout=30)"
    )
    command = [sys.executable, "-c", fetch, f"{sb.api_url}{ORDERS.path}", str(token)]
    with subprocess.Popen(command) as client:
        assert sb.faults.wait_for_hold(1, timeout=10)
        client.send_signal(signal.SIGKILL)
        client.wait(timeout=5)
    sb.faults.release()
    assert get(api, sb, ORDERS.path, take=1).status_code == 200


def test_revoked_tokens_get_401_and_a_new_token_works(sb: Sandbox) -> None:
    with authorized(sb) as session:
        sb.faults.revoke_tokens()
        assert get(session, sb, INVOICES.path).status_code == 401
        assert get(session, sb, INVOICES.path).status_code == 401
    with authorized(sb) as session:
        assert get(session, sb, INVOICES.path).status_code == 200


def test_ignore_from_serves_the_first_page_again(sb: Sandbox, api: requests.Session) -> None:
    ids = sorted(sb.ids(INVOICES.name), reverse=True)
    sb.faults.ignore_from()
    page = get(api, sb, INVOICES.path, **{CURSOR_PARAM: ids[700], PAGE_SIZE_PARAM: 2}).json()
    assert [record[PRIMARY_KEY] for record in page] == ids[:2]


def test_token_endpoint_can_fail_with_5xx(sb: Sandbox) -> None:
    sb.faults.token_error(503)
    failed = grant(sb)
    assert failed.status_code == 503 and failed.text.startswith("<html>")
    assert grant(sb).status_code == 200


def test_insert_after_adds_records_between_pages(fresh: Sandbox) -> None:
    before = fresh.ids(INVOICES.name)
    fresh.faults.insert_after(2, records=3, endpoint=INVOICES.name)
    with authorized(fresh) as session:
        first = get(session, fresh, INVOICES.path, take=5).json()
        second = get(session, fresh, INVOICES.path, take=5).json()
        third = get(session, fresh, INVOICES.path, take=5).json()
    assert first == second
    added = fresh.ids(INVOICES.name) - before
    assert len(added) == 3
    assert {record[PRIMARY_KEY] for record in third[:3]} == added
    assert min(added) > max(before)


# Runtime changes and statistics


def test_insert_gets_the_highest_id_and_remove_takes_a_record_out(fresh: Sandbox) -> None:
    with authorized(fresh) as session:
        newest = fresh.insert(ORDERS.name)
        assert get(session, fresh, ORDERS.path, take=1).json()[0] == newest

        # A back-dated record gets the highest Id yet is listed in its old window.
        old_day = fresh.data.edges.window_start
        backdated = fresh.insert(ORDERS.name, {"Status": "Completed"}, f"{old_day}T12:00:00Z")
        window_ids = walk(session, fresh, ORDERS.path, **day_window(old_day))
        assert window_ids[0] == backdated[PRIMARY_KEY] > newest[PRIMARY_KEY]
        assert backdated[ORDERS.created_field] == f"{old_day}T12:00:00.0000000Z"

        assert fresh.remove(ORDERS.name, newest[PRIMARY_KEY])
        assert not fresh.remove(ORDERS.name, newest[PRIMARY_KEY])
        assert newest[PRIMARY_KEY] not in walk(session, fresh, ORDERS.path)
        assert fresh.remove(ORDERS.name, backdated[PRIMARY_KEY])
        assert backdated[PRIMARY_KEY] not in walk(session, fresh, ORDERS.path)


def test_stats_count_requests_and_the_busiest_second(sb: Sandbox, api: requests.Session) -> None:
    for _ in range(5):
        get(api, sb, CONTRACTS.path, take=1)
    get(api, sb, ORDERS.path, take=2)
    stats = sb.stats
    assert stats.requests == {CONTRACTS.name: 5, ORDERS.name: 1}
    assert stats.token_requests == 1  # the one the `api` fixture asked for
    assert stats.max_requests_per_second >= 6
    assert stats.log[-1].params == {PAGE_SIZE_PARAM: "2"}

    sb.reset_stats()
    assert sb.stats.api_requests == 0 and sb.stats.log == ()
    assert sb.stats.tokens_issued  # tokens are remembered across resets


def test_table_pages_match_a_brute_force_listing_after_random_changes() -> None:
    rng = random.Random(3)
    table = Table(INVOICES)
    rows: dict[str, int] = {}
    for sequence in range(1, 400):
        # Mostly in creation order; now and then back-dated, as runtime inserts can be.
        ticks = sequence * 10 if rng.random() < 0.8 else rng.randrange(sequence * 10 + 1)
        record_id = f"{sequence:024x}"
        table.append(record_id, ticks, record_id.encode())
        rows[record_id] = ticks
        if rng.random() < 0.15:
            gone = rng.choice(sorted(rows))
            assert table.remove(gone)
            del rows[gone]

    for _ in range(300):
        lo, hi = sorted(rng.randrange(4000) for _ in range(2))
        cursor = rng.choice([None, *rows])
        query = Query(take=rng.randrange(1, 30), skip=rng.randrange(5), cursor=cursor, lo=lo, hi=hi)
        expected = sorted(
            (i for i, t in rows.items() if lo <= t <= hi and (cursor is None or i <= cursor)),
            reverse=True,
        )[query.skip : query.skip + query.take]
        assert [body.decode() for body in table.page(query)] == expected


# Out of process


def test_cli_serves_until_sigterm_and_its_control_api_works(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    command = [
        sys.executable, "-m", "billwerk_dagster.sandbox", "--port", "0",
        "--port-file", str(port_file), "--days", "40", "--invoices", "800", "--burst", "100",
        "--customers", "20", "--contracts", "30", "--orders", "50", "--log-level", "WARNING",
        "--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET,
    ]  # fmt: skip
    with subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists() and time.monotonic() < deadline:
                assert process.poll() is None, "the sandbox process exited early"
                time.sleep(0.05)
            url = f"http://127.0.0.1:{int(port_file.read_text())}"
            _drive_over_http(url)
        finally:
            process.send_signal(signal.SIGTERM)
            output, _ = process.communicate(timeout=10)
    assert process.returncode == 0
    assert url in output


def _drive_over_http(url: str) -> None:
    control = SandboxClient(url)
    assert control.health()["counts"][INVOICES.name] == 800
    assert control.edges()["burst_size"] == 100

    with new_session() as session:
        form = {"grant_type": "client_credentials"}
        token = session.post(
            f"{url}/oauth/token/", data=form, auth=(CLIENT_ID, CLIENT_SECRET), timeout=5
        ).json()["access_token"]
        session.headers["Authorization"] = f"Bearer {token}"
        list_url = f"{url}/api/v1/{INVOICES.path}"

        control.fault("status", code=429, retry_after=1, endpoint=INVOICES.name)
        assert session.get(list_url, timeout=5).status_code == 429
        page = session.get(list_url, params={PAGE_SIZE_PARAM: 3}, timeout=5).json()
        assert [record[PRIMARY_KEY] for record in page] == control.ids(INVOICES.name)[:3]

        added = control.insert(INVOICES.name, count=2)
        assert control.ids(INVOICES.name)[:2] == [r[PRIMARY_KEY] for r in reversed(added)]
        assert control.remove(INVOICES.name, added[0][PRIMARY_KEY])
        assert len(control.ids(INVOICES.name)) == 801

    with pytest.raises(RuntimeError, match="400"):
        control.fault("no_such_switch")
    stats = control.stats()
    assert stats.requests == {INVOICES.name: 2} and stats.token_requests == 1
    assert token in control.tokens()
    control.reset_stats()
    assert control.stats().api_requests == 0
