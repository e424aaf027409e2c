"""Billwerk pages as Arrow tables: the root table and its child tables, built here.

Why by hand: dlt's relational normalizer handles a list of dicts row by row in Python,
about 25 µs a row, which made it 60% of a 200,000-invoice load. Arrow tables pass dlt's
extract as parquet and its normalizer only moves the files. dlt does not unnest Arrow
tables, so this module does what its normalizer would have done, with the same result:

- nested objects are flattened into `parent__child` columns;
- every list becomes a child table `<table>__<field>` (a list of scalars gets a `value`
  column), linked by `_dlt_parent_id`, `_dlt_list_idx` and `_dlt_root_id`;
- names go through the schema's naming convention (snake_case by default);
- ISO 8601 strings become UTC timestamps, JSON numbers with a fraction (parsed as
  `Decimal`) become decimals, integers bigints, and a value that does not fit the type its
  column already has goes to a variant column `<column>__v_<type>`, as dlt would put it.

Row ids are deterministic: a root row's `_dlt_id` is the record's `Id`, a child row's is its
parent's id and list index. dlt's merge then deletes the children of a re-loaded record by
`_dlt_root_id`, as it does for the ids it generates itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import dlt
import pyarrow as pa
import pyarrow.compute as pc
from dlt.common.normalizers.naming import NamingConvention
from dlt.common.schema import Schema
from dlt.common.schema.typing import TColumnSchema, TDataType, TWriteDispositionConfig
from dlt.common.storages.exceptions import CurrentLoadPackageStateNotAvailable
from dlt.extract.exceptions import CurrentSourceSchemaNotAvailable

ROW_ID = "_dlt_id"
PARENT_ID = "_dlt_parent_id"
LIST_INDEX = "_dlt_list_idx"
ROOT_ID = "_dlt_root_id"
LOAD_ID = "_dlt_load_id"
# Set on the stand-in row that removes a re-loaded record's old children when it now has
# none: dlt's merge deletes such rows' keys and inserts nothing for them.
REMOVED = "_dlt_deleted"
SCALAR_VALUE = "value"

TEXT: TDataType = "text"
BIGINT: TDataType = "bigint"
DECIMAL: TDataType = "decimal"
BOOL: TDataType = "bool"
TIMESTAMP: TDataType = "timestamp"
ARROW_TYPES: dict[str, pa.DataType] = {
    TEXT: pa.string(),
    BIGINT: pa.int64(),
    # dlt's default precision for a decimal column: what the row-by-row path created.
    DECIMAL: pa.decimal128(38, 9),
    BOOL: pa.bool_(),
    TIMESTAMP: pa.timestamp("us", tz="UTC"),
}
# What dlt's default `iso_timestamp` detection takes for a timestamp.
_ISO_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})")

# dlt hints of the link columns. The child tables are root tables to dlt (it expects no
# extracted files for its nested tables), so they carry no parent_key / root_key hints.
ROW_ID_HINTS: TColumnSchema = {"data_type": TEXT, "nullable": False, "unique": True}
CHILD_COLUMN_HINTS: dict[str, TColumnSchema] = {
    ROW_ID: ROW_ID_HINTS,
    PARENT_ID: {"data_type": TEXT, "nullable": False},
    LIST_INDEX: {"data_type": BIGINT, "nullable": False},
    ROOT_ID: {"data_type": TEXT, "nullable": False},
}
REMOVED_HINTS: TColumnSchema = {"data_type": BOOL, "nullable": True, "hard_delete": True}


# Pages are converted ten at a time: dlt's per-item work (schema merge, file write) is
# then paid a few dozen times per 100,000 records, while memory stays that of ten pages.
BATCH_PAGES = 10


def arrow_items(
    root_table: str,
    key: str,
    pages: Iterable[list[dict[str, Any]]],
    write_disposition: TWriteDispositionConfig,
    root_hints: dict[str, TColumnSchema],
    keys_unique: bool = False,
) -> Iterator[Any]:
    """The items a dlt resource yields for `pages`: one Arrow table per table and batch.

    Called inside the resource, where dlt's current schema and load id are known. Each
    table is yielded with its own hints: dlt would otherwise give the child tables the
    root table's primary key and columns.

    `keys_unique` is the caller's promise that no `key` comes twice in `pages`. A merge
    then skips dlt's deduplication of the staging table: a window function over every
    row of the load, which holds them all in DuckDB's memory at once.
    """
    converter = PageConverter(root_table, *_schema_and_load_id())
    merge = isinstance(write_disposition, dict) and write_disposition["disposition"] == "merge"
    child_hints = dlt.mark.make_hints(
        write_disposition=write_disposition,
        # A re-loaded record's old children go with it, all of them.
        merge_key=ROOT_ID if merge else None,
        columns={**CHILD_COLUMN_HINTS, **({REMOVED: REMOVED_HINTS} if merge else {})},
    )
    children = {name for name in converter.schema.tables if name.startswith(f"{root_table}__")}
    root = dlt.mark.make_hints(
        table_name=root_table,
        write_disposition=write_disposition,
        primary_key=converter.naming.normalize_identifier(key) if merge else None,
        columns={ROW_ID: ROW_ID_HINTS, **root_hints},
        additional_table_hints={"x-stage-data-deduplicated": True} if keys_unique else None,
    )

    def marked(batch: list[dict[str, Any]]) -> Iterator[Any]:
        tables = converter.convert(batch, key)
        children.update(name for name in tables if name != root_table)
        if merge:
            _add_removals(tables, tables[root_table].column(ROW_ID), children)
        for name, table in tables.items():
            hints = root if name == root_table else {**child_hints, "table_name": name}
            yield dlt.mark.with_hints(table, hints, create_table_variant=True)  # type: ignore[arg-type]

    batch: list[dict[str, Any]] = []
    for number, page in enumerate(pages, start=1):
        batch.extend(page)
        if number % BATCH_PAGES == 0 and batch:
            yield from marked(batch)
            batch = []
    if batch:
        yield from marked(batch)


def _add_removals(
    tables: dict[str, pa.Table], root_ids: pa.ChunkedArray, children: set[str]
) -> None:
    """A removal row in each child table for each record that has no rows there now.

    The merge deletes a child table's rows by `_dlt_root_id` for the records it sees in
    that table; a record whose list is empty now would otherwise keep its old rows.
    """
    for name in sorted(children):
        table = tables.get(name)
        missing = root_ids
        if table is not None:
            missing = root_ids.filter(pc.invert(pc.is_in(root_ids, table.column(ROOT_ID))))
        if len(missing) == 0:
            continue
        removals = pa.table(
            {
                ROW_ID: pc.binary_join_element_wise(missing, pa.scalar(".removed"), ""),
                PARENT_ID: missing,
                LIST_INDEX: pa.array([-1] * len(missing), pa.int64()),
                ROOT_ID: missing,
                REMOVED: pa.array([True] * len(missing), pa.bool_()),
            }
        )
        tables[name] = (
            removals
            if table is None
            else pa.concat_tables([table, removals], promote_options="default")
        )


def _schema_and_load_id() -> tuple[Schema, str | None]:
    """dlt's schema and load id of the extraction running now.

    A resource iterated outside a pipeline (as tests do) has neither: a new schema then
    stands in, and the root tables get no load id column.
    """
    try:
        schema = dlt.current.source_schema()
    except CurrentSourceSchemaNotAvailable:
        schema = Schema("billwerk")
    try:
        load_id: str | None = dlt.current.load_package_state()["load_id"]
    except CurrentLoadPackageStateNotAvailable:
        load_id = None
    return schema, load_id


def data_type_of(value: Any, column_type: str | None = None) -> str:
    """The dlt data type a JSON value has; an ISO string is a timestamp where one fits."""
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        # An integer in a decimal column is a decimal, as dlt coerces it.
        return DECIMAL if column_type == DECIMAL else BIGINT
    if isinstance(value, Decimal | float):
        return DECIMAL
    if isinstance(value, str) and column_type in (None, TIMESTAMP):
        return TIMESTAMP if _ISO_TIMESTAMP.fullmatch(value) else TEXT
    return TEXT


class PageConverter:
    """Turns pages of one endpoint into Arrow tables, keeping column types across pages.

    Works column by column, so that the per-value work happens inside list comprehensions
    and Arrow rather than in a Python loop per field. `schema` is the dlt schema being
    loaded into: the types it already holds (from earlier loads) win, as they would in
    dlt's own normalizer.
    """

    def __init__(self, root_table: str, schema: Schema, load_id: str | None = None) -> None:
        self.root_table = root_table
        self.schema = schema
        self.naming: NamingConvention = schema.naming
        self.load_id = load_id
        self._names: dict[str, str] = {}
        self._types: dict[str, dict[str, str]] = {}

    def convert(self, page: list[dict[str, Any]], key: str) -> dict[str, pa.Table]:
        """The Arrow table of the root table and of each child table of `page`, by name."""
        tables: dict[str, dict[str, pa.Array]] = {}
        order, runs = _group_by_shape(page)
        if order is not None:
            page = [page[i] for i in order]
        ids = [str(record[key]) for record in page]
        root = tables[self.root_table] = {ROW_ID: pa.array(ids, pa.string())}
        self._add_columns(self.root_table, page, runs, "", root, ids, ids, tables)
        if self.load_id is not None:
            root[LOAD_ID] = pa.array([self.load_id] * len(page), pa.string())
        return {name: pa.table(columns) for name, columns in tables.items()}

    def _name(self, path: str) -> str:
        name = self._names.get(path)
        if name is None:
            name = self._names[path] = self.naming.normalize_path(path)
        return name

    def _add_columns(
        self,
        table: str,
        records: list[Any],
        runs: Runs | None,
        prefix: str,
        columns: dict[str, pa.Array],
        row_ids: list[str],
        root_ids: list[str],
        tables: dict[str, dict[str, pa.Array]],
    ) -> None:
        """Columns of `records` (dicts, or None where a nested object is null)."""
        for field_name, values in _transpose(records, runs):
            path = f"{prefix}{field_name}"
            kinds = set(map(type, values))
            kinds.discard(type(None))
            if not kinds:
                continue
            if dict in kinds:
                nested = [value if type(value) is dict else None for value in values]
                self._add_columns(
                    table, nested, None, f"{path}__", columns, row_ids, root_ids, tables
                )
            elif list in kinds:
                lists = [value if type(value) is list else () for value in values]
                self._add_child(table, path, lists, row_ids, root_ids, tables)
            else:
                self._add_scalar(table, self._name(path), values, kinds, columns)

    def _add_child(
        self,
        parent: str,
        path: str,
        lists: list[Any],
        parent_ids: list[str],
        root_ids: list[str],
        tables: dict[str, dict[str, pa.Array]],
    ) -> None:
        name = f"{parent}__{self._name(path)}"
        items = [item for items in lists for item in items]
        if not items:
            return
        indexes = [index for items in lists for index in range(len(items))]
        item_parents = [row for row, items in zip(parent_ids, lists, strict=True) for _ in items]
        item_roots = [root for root, items in zip(root_ids, lists, strict=True) for _ in items]
        if not all(type(item) is dict for item in items):
            # A list of scalars (or of lists): dlt's shape, one `value` per element.
            items = [{SCALAR_VALUE: item} for item in items]
        order, runs = _group_by_shape(items)
        if order is not None:
            items = [items[i] for i in order]
            indexes = [indexes[i] for i in order]
            item_parents = [item_parents[i] for i in order]
            item_roots = [item_roots[i] for i in order]
        item_ids = [f"{row}.{index}" for row, index in zip(item_parents, indexes, strict=True)]

        columns = tables.setdefault(name, {})
        columns[ROW_ID] = pa.array(item_ids, pa.string())
        columns[PARENT_ID] = pa.array(item_parents, pa.string())
        columns[LIST_INDEX] = pa.array(indexes, pa.int64())
        columns[ROOT_ID] = pa.array(item_roots, pa.string())
        self._add_columns(name, items, runs, "", columns, item_ids, item_roots, tables)

    def _add_scalar(
        self,
        table: str,
        name: str,
        values: list[Any],
        kinds: set[type],
        columns: dict[str, pa.Array],
    ) -> None:
        first = next(value for value in values if value is not None)
        data_type = self._column_type(table, name, first)
        if kinds <= _FITS[data_type]:
            try:
                columns[name] = _array(values, data_type, clean=True, kinds=kinds)
                return
            except pa.ArrowInvalid:
                pass  # a string that is not a timestamp, in a timestamp column

        main: list[Any] = []
        variants: dict[str, list[Any]] = {}
        for index, value in enumerate(values):
            value_type = None if value is None else data_type_of(value, data_type)
            if value_type is None or value_type == data_type:
                main.append(value)
                continue
            main.append(None)
            variants.setdefault(value_type, [None] * len(values))[index] = value
        columns[name] = _array(main, data_type)
        for variant_type, variant_values in variants.items():
            variant = self.naming.shorten_fragments(name, f"v_{variant_type}")
            self._types.setdefault(table, {})[variant] = variant_type
            columns[variant] = _array(variant_values, variant_type)

    def _column_type(self, table: str, column: str, first: Any) -> str:
        known = self._types.setdefault(table, {})
        data_type = known.get(column)
        if data_type is None:
            existing = self.schema.tables.get(table, {}).get("columns", {}).get(column, {})
            data_type = existing.get("data_type") or data_type_of(first)
            known[column] = data_type
        return data_type


Runs = list[tuple[tuple[str, ...], int]]
# Past this many field lists a table's records are looked up field by field.
_MAX_SHAPES = 8


def _group_by_shape(records: list[dict[str, Any]]) -> tuple[list[int] | None, Runs | None]:
    """An order that puts records listing the same fields together, and its runs.

    The order is None when the records are in it already (most pages list the same fields
    in every record); the runs are None when there are too many field lists to group.
    A table's rows may come in any order, so grouping lets `_transpose` take whole runs.
    """
    shapes = list(map(tuple, records))
    distinct = dict.fromkeys(shapes)
    if len(distinct) == 1:
        return None, [(shapes[0], len(records))]
    if len(distinct) > _MAX_SHAPES:
        return None, None
    order: list[int] = []
    runs: Runs = []
    for shape in distinct:
        group = [index for index, other in enumerate(shapes) if other == shape]
        order.extend(group)
        runs.append((shape, len(group)))
    return order, runs


def _transpose(records: list[Any], runs: Runs | None) -> Iterator[tuple[str, list[Any]]]:
    """(field, its value in every record) for each field any record has.

    Each run of records listing the same fields is turned around by one `zip`. Without
    runs (nested objects, which may be None), each field is looked up in each record.
    """
    if runs is None:
        fields = dict.fromkeys(field for record in records if record for field in record)
        for field_name in fields:
            yield field_name, [record.get(field_name) if record else None for record in records]
        return

    columns: dict[str, list[Any]] = {}
    done = 0
    for shape, length in runs:
        run = records[done : done + length]
        for field_name, values in zip(shape, zip(*map(dict.values, run), strict=True), strict=True):
            column = columns.get(field_name)
            if column is None:
                column = columns[field_name] = [None] * done
            column.extend(values)
        done += length
        for column in columns.values():
            if len(column) < done:
                column.extend([None] * (done - len(column)))
    yield from columns.items()


def _array(
    values: list[Any], data_type: str, clean: bool = False, kinds: set[type] | None = None
) -> pa.Array:
    """`values` as an Arrow array of `data_type`; `clean`: all are of that type or None.

    `kinds`, when known, are the types among `values`, which saves looking at each again.
    """
    if data_type == TIMESTAMP:
        parsed = pa.array(values, pa.string()).cast(pa.timestamp("ns", tz="UTC"))
        # Billwerk writes 100 ns ticks; the warehouse keeps microseconds, as before.
        return parsed.cast(ARROW_TYPES[TIMESTAMP], safe=False)
    if data_type == DECIMAL:
        exact = Decimal in kinds if kinds is not None else any(type(v) is Decimal for v in values)
        return _decimals(values, exact)
    if data_type == TEXT and not clean:
        return pa.array([_text(value) for value in values], pa.string())
    return pa.array(values, ARROW_TYPES[data_type])


def _decimals(values: list[Any], exact: bool) -> pa.Array:
    """JSON numbers as exact decimals; `exact`: some of them are `Decimal`s already.

    The client parses JSON with orjson, four times faster than `json` with `Decimal`, so
    amounts arrive as floats. Arrow writes each float as its shortest round-trip text,
    which is the JSON's own text for any number of up to 15 significant digits, and parses
    that text into the decimal: 20.14 lands as 20.14, not 20.1399999999999.
    """
    if exact:
        text = [None if value is None else str(value) for value in values]
        return pa.array(text, pa.string()).cast(ARROW_TYPES[DECIMAL])
    floats = pa.array(values, pa.float64())
    return floats.cast(pa.string()).cast(ARROW_TYPES[DECIMAL])


# Exact types: a bool is an int to `isinstance`, but not to a bigint column.
_FITS: dict[str, frozenset[type]] = {
    TEXT: frozenset({str}),
    BIGINT: frozenset({int}),
    DECIMAL: frozenset({float, int, Decimal}),
    BOOL: frozenset({bool}),
    TIMESTAMP: frozenset({str}),
}


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)
