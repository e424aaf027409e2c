"""The Billwerk assets: two `@dlt_assets` over the one dlt source.

`billwerk/customers` and `billwerk/contracts` are snapshots; `billwerk/invoices` and
`billwerk/orders` are partitioned by their day of creation, and a range of days loads in
a single run. Asset dependencies are the data's foreign keys, read from the endpoint table.
"""

from collections.abc import Iterator, Mapping
from datetime import date
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    Failure,
    IntMetadataValue,
    MaterializeResult,
    MetadataValue,
)
from dagster_dlt import DagsterDltResource, DagsterDltTranslator, dlt_assets
from dagster_dlt.translator import DltResourceTranslatorData

from billwerk_dagster.billwerk.client import BillwerkConnection
from billwerk_dagster.billwerk.endpoints import (
    ENDPOINTS,
    SNAPSHOT_ENDPOINTS,
    WINDOWED_ENDPOINTS,
    Endpoint,
)
from billwerk_dagster.billwerk.errors import BillwerkError, find_billwerk_error
from billwerk_dagster.billwerk.source import SyncStats, billwerk_source
from billwerk_dagster.billwerk.window import Window
from billwerk_dagster.orchestration.partitions import daily_partitions, window_of
from billwerk_dagster.orchestration.resources import (
    LOADER_FILE_FORMAT,
    BillwerkResource,
    WarehouseResource,
)

GROUP = "billwerk"
# Every writer of the warehouse runs in this pool; dagster.yaml gives it one slot.
WAREHOUSE_POOL = "billwerk_warehouse"
SNAPSHOT_PIPELINE = "billwerk_snapshots"
WINDOWED_PIPELINE = "billwerk_windowed"

# Only for building asset specs at definition time: nothing is fetched with it.
_SPEC_CONNECTION = BillwerkConnection(
    base_url="https://billwerk.invalid", client_id="spec-only", client_secret="spec-only"
)


# A range run writes one event per partition and asset, each with the whole metadata, and
# Dagster's event log pays for every byte. Left out: dagster-dlt's list of dlt's load jobs
# (temporary file names, sizes, timings: nothing a user reads after the run), and the column
# schema of every child table, which repeats what the warehouse and dlt's schema hold. The
# asset's own `dagster/column_schema` stays, and the child tables are named.
_DROPPED_METADATA = frozenset({"jobs"})


def asset_key(endpoint: Endpoint) -> AssetKey:
    return AssetKey([GROUP, endpoint.name])


class BillwerkTranslator(DagsterDltTranslator):
    """Keys `billwerk/<endpoint>`; dependencies from the endpoint table's foreign keys."""

    def get_asset_spec(self, data: DltResourceTranslatorData) -> AssetSpec:
        endpoint = ENDPOINTS[data.resource.name]
        deps = [asset_key(ENDPOINTS[endpoint.references[0]])] if endpoint.references else []
        kind = "daily by creation time" if endpoint.windowed else "full snapshot"
        return (
            super()
            .get_asset_spec(data)
            .replace_attributes(
                key=asset_key(endpoint),
                deps=deps,
                group_name=GROUP,
                description=f"Billwerk /{endpoint.path}, {kind}, table {GROUP}.{endpoint.name}.",
            )
        )


def _load(
    context: AssetExecutionContext,
    dlt: DagsterDltResource,
    billwerk: BillwerkResource,
    warehouse: WarehouseResource,
    pipeline_name: str,
    endpoints: tuple[Endpoint, ...],
    window: Window | None,
) -> Iterator[MaterializeResult]:
    try:
        connection = billwerk.connection()
    except BillwerkError as e:
        raise Failure(description=str(e)) from None

    # Only what the run selected: a run of the invoices asset alone fetches no orders.
    names = [e.name for e in endpoints if asset_key(e) in context.selected_asset_keys]
    stats = SyncStats()
    source = billwerk_source(connection, window, stats).with_resources(*names)
    if window is not None:
        context.log.info(f"Loading {', '.join(names)} created in {window}")

    with warehouse.writer_lock(pipeline_name):
        try:
            results = list(
                dlt.run(
                    context=context,
                    dlt_source=source,
                    dlt_pipeline=warehouse.pipeline(pipeline_name),
                    loader_file_format=LOADER_FILE_FORMAT,
                )
            )
        except Exception as e:
            cause = find_billwerk_error(e)
            if cause is None:
                raise
            raise Failure(description=str(cause)) from e

    for result in results:
        assert result.asset_key is not None
        name = result.asset_key.path[-1]
        endpoint_stats = stats[name]
        metadata, child_tables = _slim(name, result.metadata or {})
        loaded = metadata.get("rows_loaded")
        # dagster-dlt leaves rows_loaded out when it is zero.
        rows = loaded.value if isinstance(loaded, IntMetadataValue) and loaded.value else 0
        if endpoint_stats.records == 0:
            context.log.warning(f"Billwerk listed no {name}" + (f" in {window}" if window else ""))
        context.log.info(
            f"{name}: {rows} rows loaded from {endpoint_stats.pages} pages, "
            f"{endpoint_stats.requests} requests, {endpoint_stats.seconds:.1f}s fetching"
        )
        yield MaterializeResult(
            asset_key=result.asset_key,
            metadata={
                **metadata,
                "rows_loaded": MetadataValue.int(rows),
                "records_fetched": MetadataValue.int(endpoint_stats.records),
                "pages": MetadataValue.int(endpoint_stats.pages),
                "requests": MetadataValue.int(endpoint_stats.requests),
                "fetch_seconds": MetadataValue.float(round(endpoint_stats.seconds, 3)),
                "child_tables": MetadataValue.text(", ".join(child_tables)),
                **({"window": MetadataValue.text(str(window))} if window else {}),
            },
        )


def _slim(name: str, metadata: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """dagster-dlt's metadata for the asset `name` without what `_DROPPED_METADATA` says is
    left out, and the names of its child tables, whose schemas are left out too."""
    child_prefix = f"{name}__"
    children = sorted(k for k in metadata if k.startswith(child_prefix))
    kept = {
        k: v
        for k, v in metadata.items()
        if k not in _DROPPED_METADATA and not k.startswith(child_prefix)
    }
    return kept, children


def build_assets(start_date: date, warehouse: WarehouseResource) -> list:
    """The two multi-assets, their partitions starting at `start_date`."""
    spec_source = billwerk_source(_SPEC_CONNECTION)
    translator = BillwerkTranslator()

    @dlt_assets(
        dlt_source=spec_source.with_resources(*(e.name for e in SNAPSHOT_ENDPOINTS)),
        dlt_pipeline=warehouse.pipeline(SNAPSHOT_PIPELINE, for_definitions=True),
        name=SNAPSHOT_PIPELINE,
        dagster_dlt_translator=translator,
        pool=WAREHOUSE_POOL,
    )
    def billwerk_snapshots(
        context: AssetExecutionContext,
        dlt: DagsterDltResource,
        billwerk: BillwerkResource,
        warehouse: WarehouseResource,
    ) -> Iterator[MaterializeResult]:
        yield from _load(
            context, dlt, billwerk, warehouse, SNAPSHOT_PIPELINE, SNAPSHOT_ENDPOINTS, None
        )

    @dlt_assets(
        dlt_source=spec_source.with_resources(*(e.name for e in WINDOWED_ENDPOINTS)),
        dlt_pipeline=warehouse.pipeline(WINDOWED_PIPELINE, for_definitions=True),
        name=WINDOWED_PIPELINE,
        dagster_dlt_translator=translator,
        partitions_def=daily_partitions(start_date),
        backfill_policy=BackfillPolicy.single_run(),
        pool=WAREHOUSE_POOL,
    )
    def billwerk_windowed(
        context: AssetExecutionContext,
        dlt: DagsterDltResource,
        billwerk: BillwerkResource,
        warehouse: WarehouseResource,
    ) -> Iterator[MaterializeResult]:
        window = window_of(context.partition_time_window)
        yield from _load(
            context, dlt, billwerk, warehouse, WINDOWED_PIPELINE, WINDOWED_ENDPOINTS, window
        )

    return [billwerk_snapshots, billwerk_windowed]
