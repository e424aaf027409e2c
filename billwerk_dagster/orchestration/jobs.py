"""The jobs that the schedules and the sensor launch, and the day range one run covers.

A run over several days is one run: it carries Dagster's partition-range tags, and the
windowed assets load the whole range in a single window (their backfill policy is
`single_run`). A job that also holds the snapshot assets materializes them first in the
same run, because the windowed assets depend on them.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from dagster import (
    AssetChecksDefinition,
    AssetSelection,
    TimeWindowPartitionsDefinition,
    define_asset_job,
    partition_loading_context,
)
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from billwerk_dagster.billwerk.endpoints import ENDPOINTS, INVOICES
from billwerk_dagster.orchestration.assets import asset_key

DAILY_JOB = "billwerk_daily"
NEW_INVOICES_JOB = "billwerk_new_invoices"
FRESHNESS_JOB = "billwerk_freshness"


def daily_job() -> UnresolvedAssetJobDefinition:
    """Every asset and its checks; the snapshots run first, the windowed days after them."""
    return define_asset_job(
        DAILY_JOB,
        selection=AssetSelection.assets(*(asset_key(e) for e in ENDPOINTS.values())),
        description="Refresh the snapshots, then reload a range of days of the windowed "
        "endpoints, all in one run. Launched by the daily schedule.",
    )


def new_invoices_job() -> UnresolvedAssetJobDefinition:
    """Invoices for some days, with the snapshot their foreign key points into.

    A new invoice often belongs to a customer created the same day; refreshing that
    snapshot in the same run keeps the foreign-key check from reporting it as an orphan.
    """
    parent = ENDPOINTS[INVOICES.references[0]] if INVOICES.references else None
    keys = [asset_key(e) for e in (parent, INVOICES) if e is not None]
    return define_asset_job(
        NEW_INVOICES_JOB,
        selection=AssetSelection.assets(*keys),
        description="Load the days that new invoices fall in. Launched by the new-invoices sensor.",
    )


def freshness_job(freshness_checks: AssetChecksDefinition) -> UnresolvedAssetJobDefinition:
    """Only the freshness checks: they read Dagster's event log, not the warehouse."""
    return define_asset_job(
        FRESHNESS_JOB,
        selection=AssetSelection.checks(freshness_checks),
        description="Evaluate whether every asset was loaded as recently as the daily "
        "schedule promises.",
    )


def range_tags(first: str, last: str) -> dict[str, str]:
    """The tags that make one run cover the partitions `first` to `last`, both included."""
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


def days_within(
    partitions: TimeWindowPartitionsDefinition, first: date, last: date, now: datetime
) -> tuple[str, str] | None:
    """The partition keys of `first`..`last`, cut to the days that exist at `now`.

    None when no day is left: the range lies before the start date or after today.
    """
    with partition_loading_context(effective_dt=now):
        last_key = partitions.get_last_partition_key()
    if last_key is None:
        return None

    start = partitions.start.date()
    end = datetime.strptime(last_key, partitions.fmt).date()
    first, last = max(first, start), min(last, end)
    if last < first:
        return None
    return first.strftime(partitions.fmt), last.strftime(partitions.fmt)


def lookback_days(tick: datetime, lookback: int) -> tuple[date, date]:
    """Yesterday relative to `tick` (in UTC) and the `lookback` days before it."""
    yesterday = tick.astimezone(UTC).date() - timedelta(days=1)
    return yesterday - timedelta(days=lookback), yesterday
