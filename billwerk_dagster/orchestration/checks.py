"""Asset checks: the warehouse's foreign keys and unique Ids, and each asset's freshness.

The warehouse checks read the tables through dlt's SQL client, so they work for any dlt
destination, and inside the warehouse's writer lock, because DuckDB refuses a reader while
another process writes. They run in the same run right after their asset loads (a job that
selects an asset selects its checks) and on their own from the UI. A table that was never
loaded fails its check with a warning that says what to materialize, instead of erroring.

Freshness is judged from Dagster's own record of materializations: an asset is fresh when
it was loaded since the newest tick of the daily schedule whose run should be done by now.
"""

# No `from __future__ import annotations`: Dagster inspects a check function's `context`
# annotation and rejects it when it is a string.
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckKey,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetCheckSpec,
    MetadataValue,
    multi_asset_check,
)
from dagster._utils.schedules import reverse_cron_string_iterator
from dlt.common.normalizers.naming.snake_case import NamingConvention
from dlt.destinations.exceptions import DatabaseUndefinedRelation
from dlt.destinations.sql_client import SqlClientBase

from billwerk_dagster.billwerk.endpoints import ENDPOINTS, PRIMARY_KEY, Endpoint
from billwerk_dagster.orchestration.assets import asset_key
from billwerk_dagster.orchestration.automation_settings import AutomationSettings
from billwerk_dagster.orchestration.resources import WarehouseResource

UNIQUE_CHECK = "id_is_unique"
FRESHNESS_CHECK = "loaded_on_schedule"
# A pipeline of its own, so reading never touches the working folders the loads reset.
READER_PIPELINE = "billwerk_checks"
SAMPLE_SIZE = 10

# dlt's default naming, which this project keeps: `CustomerId` lands as `customer_id`.
_NAMING = NamingConvention()

Sql = SqlClientBase[Any]
WarehouseCheck = Callable[[Sql], AssetCheckResult]


def foreign_key_check_name(endpoint: Endpoint) -> str | None:
    """E.g. `customer_id_in_customers`; None for an endpoint without a foreign key."""
    if endpoint.references is None:
        return None
    parent, field = endpoint.references
    return f"{_NAMING.normalize_identifier(field)}_in_{parent}"


def build_warehouse_checks() -> AssetChecksDefinition:
    """Unique `id` in every table, and every foreign key found in its parent table.

    Blocking: a failure fails the run, so `dagster asset materialize` exits non-zero and
    nothing downstream is built on data known to be wrong.
    """
    specs: list[AssetCheckSpec] = []
    evaluators: dict[AssetCheckKey, WarehouseCheck] = {}
    for endpoint in ENDPOINTS.values():
        unique = AssetCheckSpec(
            UNIQUE_CHECK,
            asset=asset_key(endpoint),
            blocking=True,
            description=f"Every {PRIMARY_KEY} appears once in {endpoint.name}.",
        )
        specs.append(unique)
        evaluators[unique.key] = _unique_ids(endpoint)

        name = foreign_key_check_name(endpoint)
        if name is not None and endpoint.references is not None:
            parent = ENDPOINTS[endpoint.references[0]]
            foreign_key = AssetCheckSpec(
                name,
                asset=asset_key(endpoint),
                additional_deps=[asset_key(parent)],
                blocking=True,
                description=f"Every {endpoint.name} row's {endpoint.references[1]} is the "
                f"{PRIMARY_KEY} of a row in {parent.name}.",
            )
            specs.append(foreign_key)
            evaluators[foreign_key.key] = _foreign_keys_found(endpoint, parent)

    @multi_asset_check(specs=specs, can_subset=True, name="billwerk_warehouse_checks")
    def billwerk_warehouse_checks(
        context: AssetCheckExecutionContext, warehouse: WarehouseResource
    ) -> Iterator[AssetCheckResult]:
        selected = sorted(context.selected_asset_check_keys, key=lambda k: k.to_user_string())
        with _reading(context, warehouse) as sql:
            for key in selected:
                yield evaluators[key](sql)

    return billwerk_warehouse_checks


@contextmanager
def _reading(context: AssetCheckExecutionContext, warehouse: WarehouseResource) -> Iterator[Sql]:
    asked = time.monotonic()
    with warehouse.writer_lock():
        waited = time.monotonic() - asked
        if waited >= 1:
            context.log.info(f"Waited {waited:.0f}s for a run that was writing the warehouse")
        context.log.info(f"Reading {warehouse.dataset_name} in {warehouse.destination}")
        with warehouse.pipeline(READER_PIPELINE).sql_client() as sql:
            yield sql


def _rows(sql: Sql, query: str) -> list[Any]:
    return list(sql.execute_sql(query) or [])


def _sample(sql: Sql, query: str) -> list[Any]:
    """The first rows of `query`; fetched, not `limit`ed, since not every SQL dialect has it."""
    with sql.execute_query(query) as cursor:
        return list(cursor.fetchmany(SAMPLE_SIZE))


def _column(sql: Sql, name: str) -> str:
    return sql.escape_column_name(_NAMING.normalize_identifier(name))


def _table(sql: Sql, endpoint: Endpoint) -> str:
    return sql.make_qualified_table_name(_NAMING.normalize_table_identifier(endpoint.name))


def _not_loaded(check: AssetCheckKey, missing: Endpoint) -> AssetCheckResult:
    return AssetCheckResult(
        asset_key=check.asset_key,
        check_name=check.name,
        passed=False,
        severity=AssetCheckSeverity.WARN,
        description=f"Table {missing.name} does not exist yet: materialize "
        f"{asset_key(missing).to_user_string()} first.",
        metadata={"table_exists": False},
    )


def _unique_ids(endpoint: Endpoint) -> WarehouseCheck:
    key = AssetCheckKey(asset_key(endpoint), UNIQUE_CHECK)

    def evaluate(sql: Sql) -> AssetCheckResult:
        table, id_ = _table(sql, endpoint), _column(sql, PRIMARY_KEY)
        try:
            rows, distinct = _rows(sql, f"select count(*), count(distinct {id_}) from {table}")[0]
        except DatabaseUndefinedRelation:
            return _not_loaded(key, endpoint)

        duplicated = int(rows) - int(distinct)
        sample: list[Any] = []
        if duplicated:
            sample = _sample(
                sql,
                f"select {id_}, count(*) from {table} group by {id_} having count(*) > 1 "
                f"order by count(*) desc, {id_}",
            )
        return AssetCheckResult(
            asset_key=key.asset_key,
            check_name=key.name,
            passed=duplicated == 0,
            severity=AssetCheckSeverity.ERROR,
            description=(
                f"{rows} rows, every {PRIMARY_KEY} once."
                if not duplicated
                else f"{duplicated} surplus rows in {endpoint.name}: the same {PRIMARY_KEY} "
                f"loaded more than once, e.g. {sample[0][0]} ({sample[0][1]} times)."
            ),
            metadata={
                "row_count": int(rows),
                "duplicate_rows": duplicated,
                "duplicate_sample": MetadataValue.json(
                    [{"id": str(i), "rows": int(n)} for i, n in sample]
                ),
            },
        )

    return evaluate


def _foreign_keys_found(endpoint: Endpoint, parent: Endpoint) -> WarehouseCheck:
    name = foreign_key_check_name(endpoint)
    assert name is not None and endpoint.references is not None
    key = AssetCheckKey(asset_key(endpoint), name)
    field = endpoint.references[1]

    def evaluate(sql: Sql) -> AssetCheckResult:
        child, parents = _table(sql, endpoint), _table(sql, parent)
        id_, fk = _column(sql, PRIMARY_KEY), _column(sql, field)
        orphans = (
            f"from {child} c where c.{fk} is not null and not exists "
            f"(select 1 from {parents} p where p.{id_} = c.{fk})"
        )
        try:
            checked = int(_rows(sql, f"select count(*) from {child}")[0][0])
        except DatabaseUndefinedRelation:
            return _not_loaded(key, endpoint)
        try:
            count, missing = _rows(sql, f"select count(*), count(distinct c.{fk}) {orphans}")[0]
        except DatabaseUndefinedRelation:
            return _not_loaded(key, parent)

        sample: list[Any] = []
        if count:
            sample = _sample(sql, f"select c.{id_}, c.{fk} {orphans} order by c.{id_}")
        return AssetCheckResult(
            asset_key=key.asset_key,
            check_name=key.name,
            passed=count == 0,
            severity=AssetCheckSeverity.ERROR,
            description=(
                f"All {checked} {endpoint.name} point to a row of {parent.name}."
                if not count
                else f"{count} {endpoint.name} point to {missing} {field} values missing from "
                f"{parent.name}, e.g. {sample[0][0]} -> {sample[0][1]}. Reload "
                f"{asset_key(parent).to_user_string()} if it is older than {endpoint.name}."
            ),
            metadata={
                "checked_rows": checked,
                "orphan_count": int(count),
                "missing_parent_count": int(missing),
                "orphan_sample": MetadataValue.json(
                    [{"id": str(i), field: str(p)} for i, p in sample]
                ),
            },
        )

    return evaluate


def expected_update_since(cron: str, now: datetime, grace: timedelta) -> datetime:
    """The newest schedule tick whose run should have finished by `now`, given `grace`.

    An asset loaded since then is fresh. Before the grace after a tick runs out, that run
    may still be going, so the tick before it is the one that counts.
    """
    for tick in reverse_cron_string_iterator(now.timestamp(), cron, "UTC"):
        if tick + grace <= now:
            return tick
    raise AssertionError("a cron schedule always has an earlier tick")  # pragma: no cover


def build_freshness_checks(
    settings: AutomationSettings, clock: Callable[[], datetime] | None = None
) -> AssetChecksDefinition:
    """One check per asset: loaded as recently as the daily schedule promises.

    `clock` gives the current time (UTC); tests pass one to look at a later day.
    """
    now_utc = clock or (lambda: datetime.now(UTC))
    specs = [
        AssetCheckSpec(
            FRESHNESS_CHECK,
            asset=asset_key(endpoint),
            description=f"Loaded since the latest daily run ({settings.schedule_cron} UTC) "
            f"that should be done by now, allowing {settings.freshness_grace_hours} h per run.",
        )
        for endpoint in ENDPOINTS.values()
    ]

    @multi_asset_check(specs=specs, can_subset=True, name="billwerk_freshness_checks")
    def billwerk_freshness_checks(
        context: AssetCheckExecutionContext,
    ) -> Iterator[AssetCheckResult]:
        now = now_utc()
        since = expected_update_since(settings.schedule_cron, now, settings.freshness_grace)
        for key in sorted(context.selected_asset_check_keys, key=lambda k: k.to_user_string()):
            yield _freshness(context, key, since, now)

    return billwerk_freshness_checks


def _freshness(
    context: AssetCheckExecutionContext, key: AssetCheckKey, since: datetime, now: datetime
) -> AssetCheckResult:
    event = context.instance.get_latest_materialization_event(key.asset_key)
    metadata: dict[str, Any] = {"expected_since": MetadataValue.timestamp(since)}
    if event is None:
        return AssetCheckResult(
            asset_key=key.asset_key,
            check_name=key.name,
            passed=False,
            severity=AssetCheckSeverity.WARN,
            description=f"{key.asset_key.to_user_string()} was never materialized: start the "
            "daily schedule or launch a backfill.",
            metadata=metadata,
        )

    loaded = datetime.fromtimestamp(event.timestamp, UTC)
    age_hours = (now - loaded).total_seconds() / 3600
    metadata |= {
        "last_loaded": MetadataValue.timestamp(loaded),
        "age_hours": round(age_hours, 2),
    }
    fresh = loaded >= since
    return AssetCheckResult(
        asset_key=key.asset_key,
        check_name=key.name,
        passed=fresh,
        severity=AssetCheckSeverity.WARN,
        description=(
            f"Loaded {age_hours:.1f} h ago, after the run due at {since:%Y-%m-%d %H:%M} UTC."
            if fresh
            else f"Last loaded {age_hours:.1f} h ago, before the run due at "
            f"{since:%Y-%m-%d %H:%M} UTC: check that run and the daily schedule."
        ),
        metadata=metadata,
    )
