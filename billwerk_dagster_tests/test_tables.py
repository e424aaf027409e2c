"""Pages as Arrow tables (billwerk/tables.py): the same rows dlt's row-by-row normalizer
would make, exact money, children linked to their parents by Id, and a re-loaded record's
children replaced whole, even when it has none left."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from dlt.common.schema import Schema

from billwerk_dagster.billwerk.endpoints import INVOICES, PRIMARY_KEY
from billwerk_dagster.billwerk.tables import (
    LIST_INDEX,
    PARENT_ID,
    ROOT_ID,
    ROW_ID,
    SCALAR_VALUE,
    PageConverter,
)
from billwerk_dagster.sandbox import Sandbox, SandboxData
from billwerk_dagster_tests.conftest import Project

DAY = "2024-01-10"
CREATED = f"{DAY}T10:00:00.0000000Z"
VARIANT = "__v_"


def _random_record(rng: random.Random, number: int, few_shapes: bool) -> dict[str, Any]:
    """A record whose fields come and go, nest, repeat and change type.

    With `few_shapes` only the address and the items come and go, so a page holds a few
    field lists (grouped); otherwise nearly every record has its own (looked up).
    """
    moment = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(10**7))
    record: dict[str, Any] = {"Id": f"id{number:05d}", "Created": _iso(moment)}
    if few_shapes:
        record["TotalNet"] = round(rng.uniform(0, 10_000), 2)
        if rng.random() < 0.7:
            record["Address"] = rng.choice([None, {"City": "Zürich"}])
        if rng.random() < 0.7:
            record["ItemList"] = [_random_item(rng) for _ in range(rng.randrange(4))]
        return record
    if rng.random() < 0.8:
        record["TotalNet"] = round(rng.uniform(0, 10_000), 2)
    if rng.random() < 0.5:
        record["Mixed"] = rng.choice([7, "seven", True, 7.5])
    if rng.random() < 0.7:
        record["Address"] = rng.choice(
            [None, {"City": "Zürich"}, {"City": "Köln", "Street": "Ring"}]
        )
    if rng.random() < 0.7:
        record["ItemList"] = [_random_item(rng) for _ in range(rng.randrange(4))]
    if rng.random() < 0.3:
        record["Tags"] = [rng.choice(["a", "b", None]) for _ in range(rng.randrange(3))]
    if rng.random() < 0.2:
        record["Matrix"] = [[rng.randrange(9) for _ in range(2)] for _ in range(2)]
    if rng.random() < 0.1:
        record[f"Free{rng.randrange(12)}"] = "x"  # many field lists: the slow path
    keys = list(record)
    rng.shuffle(keys)  # the same fields in another order are another shape
    return {key: record[key] for key in keys}


def _random_item(rng: random.Random) -> dict[str, Any]:
    item: dict[str, Any] = {"Description": rng.choice(["Gebühr", "Fee", "Frais"])}
    if rng.random() < 0.8:
        item["Quantity"] = rng.randrange(1, 5)
    if rng.random() < 0.8:
        item["PricePerUnit"] = round(rng.uniform(0, 500), 4)
    if rng.random() < 0.3:
        item["Discounts"] = [{"Percent": rng.randrange(50)}]
    return item


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _row_by_row(records: list[dict[str, Any]], root: str, schema: Schema) -> dict[str, dict]:
    """The reference: dlt's relational shape built one value at a time, rows by `_dlt_id`."""
    naming = schema.naming
    tables: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)

    def flatten(value: dict, prefix: str, row: dict, table: str, row_id: str, root_id: str) -> None:
        for key, item in value.items():
            path = f"{prefix}{key}"
            if isinstance(item, dict):
                flatten(item, f"{path}__", row, table, row_id, root_id)
            elif isinstance(item, list):
                children(item, path, table, row_id, root_id)
            elif item is not None:
                row[naming.normalize_path(path)] = item

    def children(items: list, path: str, parent: str, parent_id: str, root_id: str) -> None:
        table = f"{parent}__{naming.normalize_path(path)}"
        for index, item in enumerate(items):
            child_id = f"{parent_id}.{index}"
            row = {ROW_ID: child_id, PARENT_ID: parent_id, LIST_INDEX: index, ROOT_ID: root_id}
            if isinstance(item, dict):
                flatten(item, "", row, table, child_id, root_id)
            elif isinstance(item, list):
                children(item, SCALAR_VALUE, table, child_id, root_id)
            elif item is not None:
                row[SCALAR_VALUE] = item
            tables[table][child_id] = row

    for record in records:
        row_id = str(record[PRIMARY_KEY])
        row: dict[str, Any] = {ROW_ID: row_id}
        flatten(record, "", row, root, row_id, row_id)
        tables[root][row_id] = row
    return dict(tables)


def _comparable(value: Any) -> Any:
    """Values as both sides can hold them: timestamps parsed, numbers as exact decimals."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | Decimal):
        return Decimal(str(value)).normalize()
    if isinstance(value, str) and len(value) == 28 and value.endswith("0Z"):
        return datetime.fromisoformat(value[:-2] + "+00:00")
    return value


def _without_variants(row: dict[str, Any]) -> dict[str, Any]:
    """Each value under its column's own name, wherever a variant column put it."""
    return {name.split(VARIANT)[0]: _comparable(v) for name, v in row.items() if v is not None}


@pytest.mark.parametrize("few_shapes", [True, False])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_converted_tables_hold_the_rows_a_row_by_row_flattening_makes(
    seed: int, few_shapes: bool
) -> None:
    rng = random.Random(seed)
    pages = [[_random_record(rng, n * 1000 + i, few_shapes) for i in range(200)] for n in range(3)]
    schema = Schema("billwerk")
    converter = PageConverter("invoices", schema, load_id="load-1")

    converted: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for page in pages:
        for name, table in converter.convert(page, PRIMARY_KEY).items():
            for row in table.to_pylist():
                assert row.pop("_dlt_load_id", "load-1") == "load-1"
                converted[name][row[ROW_ID]] = _without_variants(row)
    expected = _row_by_row([record for page in pages for record in page], "invoices", schema)

    assert set(converted) == set(expected)
    for name, rows in expected.items():
        assert converted[name] == {key: _without_variants(row) for key, row in rows.items()}, name


def test_a_column_keeps_its_first_type_and_other_values_go_to_variants() -> None:
    converter = PageConverter("invoices", Schema("billwerk"))
    first = [{"Id": "a", "Code": 7}, {"Id": "b", "Code": 8}]
    second = [{"Id": "c", "Code": "K-7"}, {"Id": "d", "Code": 9}, {"Id": "e", "Code": True}]

    [table] = converter.convert(first, PRIMARY_KEY).values()
    assert str(table.schema.field("code").type) == "int64"
    [table] = converter.convert(second, PRIMARY_KEY).values()

    assert table.column("code").to_pylist() == [None, 9, None]
    assert table.column("code__v_text").to_pylist() == ["K-7", None, None]
    assert table.column("code__v_bool").to_pylist() == [None, None, True]


def _amounts_invoice(sandbox_data: SandboxData, total: float, prices: list[float]) -> dict:
    template = next(r for r in sandbox_data.records(INVOICES.name) if r.get("ItemList"))
    items = [{**template["ItemList"][0], "PricePerUnit": price} for price in prices]
    return {**template, "TotalNet": total, "ItemList": items}


def test_amounts_land_as_exact_decimals(
    project: Project, sandbox: Sandbox, sandbox_data: SandboxData
) -> None:
    amounts = [0.1, 0.3, 20.14, 1234567890.1234, 99999999999.99, 0.000000001]
    added = [
        sandbox.insert(
            INVOICES.name, _amounts_invoice(sandbox_data, amount, [amount, 8.1]), CREATED
        )
        for amount in amounts
    ]

    project.load_days(DAY)

    ids = [record[PRIMARY_KEY] for record in added]
    totals = dict(
        project.rows(  # type: ignore[arg-type]
            "select id, total_net from billwerk.invoices where id in (select unnest(?))", [ids]
        )
    )
    prices = project.rows(
        "select price_per_unit from billwerk.invoices__item_list "
        "where _dlt_root_id in (select unnest(?)) order by _dlt_root_id, _dlt_list_idx",
        [ids],
    )
    assert [totals[i] for i in ids] == [Decimal(str(amount)) for amount in amounts]
    assert sorted(p for (p,) in prices) == sorted(
        [Decimal(str(amount)) for amount in amounts] + [Decimal("8.1")] * len(amounts)
    )


def _items(project: Project, invoice_id: str) -> list[tuple[Any, ...]]:
    return project.rows(
        "select _dlt_list_idx, description, _dlt_parent_id from billwerk.invoices__item_list "
        "where _dlt_root_id = ? order by _dlt_list_idx",
        [invoice_id],
    )


def test_child_rows_point_to_their_parent_by_id_in_list_order(
    project: Project, sandbox: Sandbox
) -> None:
    project.load_days(DAY)

    day_ids = sandbox.ids(INVOICES.name, f"{DAY}T00:00:00.0000000Z", f"{DAY}T23:59:59.9999999Z")
    records = {r[PRIMARY_KEY]: r for r in sandbox.data.records(INVOICES.name)}
    for invoice_id in sorted(day_ids)[:20]:
        expected = [
            (index, item["Description"], invoice_id)
            for index, item in enumerate(records[invoice_id].get("ItemList") or [])
        ]
        assert _items(project, invoice_id) == expected
    parents = project.rows(
        "select count(*) from billwerk.invoices__item_list c "
        "left join billwerk.invoices p on p._dlt_id = c._dlt_parent_id where p.id is null"
    )
    assert parents == [(0,)]


def test_reloading_a_day_replaces_a_records_children_even_when_none_are_left(
    project: Project, sandbox: Sandbox
) -> None:
    shrinking = sandbox.insert(INVOICES.name, None, CREATED)
    emptied = sandbox.insert(INVOICES.name, None, CREATED)
    kept = sandbox.insert(INVOICES.name, None, CREATED)
    for record in (shrinking, emptied, kept):
        record["ItemList"] = [
            {"Description": f"line {n}", "Quantity": 1, "PricePerUnit": 1.5} for n in range(3)
        ]
        assert sandbox.update(INVOICES.name, record)
    project.load_days(DAY)
    assert len(_items(project, emptied[PRIMARY_KEY])) == 3

    shrinking["ItemList"] = shrinking["ItemList"][:1]
    del emptied["ItemList"]
    sandbox.update(INVOICES.name, shrinking)
    sandbox.update(INVOICES.name, emptied)
    project.load_days(DAY)

    assert [row[1] for row in _items(project, shrinking[PRIMARY_KEY])] == ["line 0"]
    assert _items(project, emptied[PRIMARY_KEY]) == []
    assert len(_items(project, kept[PRIMARY_KEY])) == 3
    # The stand-in rows that carried the removal are not stored.
    removed = project.rows(
        "select count(*) from billwerk.invoices__item_list where _dlt_list_idx < 0"
    )
    assert removed == [(0,)]
