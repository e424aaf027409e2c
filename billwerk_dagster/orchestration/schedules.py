"""When the daily job runs, what one run covers, and when freshness is judged.

Every day at `BILLWERK_SCHEDULE_CRON` (02:00 UTC by default) one run refreshes customers
and contracts and then, once they have succeeded, reloads invoices and orders for
yesterday and the `BILLWERK_LOOKBACK_DAYS` days before it. The look-back exists because
records change after the day they were created (an invoice is sent, an order completes).

Why a schedule over a job and not declarative automation (`AutomationCondition`): the
changes the look-back picks up happen inside Billwerk, where Dagster cannot see them. An
automation condition reacts to what Dagster knows (missing partitions, updated parents, a
cron tick for the newest partition), so it would request yesterday once and never reload
the days before it. The schedule states the contract directly: one run per tick over a
fixed range, snapshots first, idempotent per tick, and testable with
`build_schedule_context`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    TimeWindowPartitionsDefinition,
    schedule,
)
from dagster._core.definitions.unresolved_asset_job_definition import (
    UnresolvedAssetJobDefinition,
)

from billwerk_dagster.billwerk.endpoints import SNAPSHOT_ENDPOINTS
from billwerk_dagster.orchestration.assets import asset_key
from billwerk_dagster.orchestration.automation_settings import AutomationSettings
from billwerk_dagster.orchestration.jobs import days_within, lookback_days, range_tags

DAILY_SCHEDULE = "billwerk_daily_schedule"
FRESHNESS_SCHEDULE = "billwerk_freshness_hourly"
# Freshness changes at most once per daily tick; hourly notices a missed run soon enough.
FRESHNESS_CRON = "30 * * * *"


def build_daily_schedule(
    job: UnresolvedAssetJobDefinition,
    partitions: TimeWindowPartitionsDefinition,
    settings: AutomationSettings,
) -> ScheduleDefinition:
    """The daily run. RUNNING by default: keeping the data fresh unattended is its purpose."""

    @schedule(
        name=DAILY_SCHEDULE,
        job=job,
        cron_schedule=settings.schedule_cron,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description=(
            f"Refresh the snapshots, then reload yesterday and the {settings.lookback_days} "
            "days before it, in one run."
        ),
    )
    def billwerk_daily_schedule(context: ScheduleEvaluationContext) -> RunRequest:
        tick = context.scheduled_execution_time or datetime.now(UTC)
        first, last = lookback_days(tick, settings.lookback_days)
        run_key = f"{DAILY_SCHEDULE}:{tick.astimezone(UTC):%Y-%m-%dT%H:%M}"

        days = days_within(partitions, first, last, tick)
        if days is None:
            # The start date is today: no finished day to load yet, the snapshots still are.
            context.log.info(f"No day before {tick:%Y-%m-%d} to load; refreshing snapshots only")
            return RunRequest(
                run_key=run_key, asset_selection=[asset_key(e) for e in SNAPSHOT_ENDPOINTS]
            )

        context.log.info(f"Snapshots, then the days {days[0]}..{days[1]} in one run")
        return RunRequest(run_key=run_key, tags=range_tags(*days))

    return billwerk_daily_schedule


def build_freshness_schedule(job: UnresolvedAssetJobDefinition) -> ScheduleDefinition:
    """The freshness checks, hourly, so a missed daily run shows up without a new load."""
    return ScheduleDefinition(
        name=FRESHNESS_SCHEDULE,
        job=job,
        cron_schedule=FRESHNESS_CRON,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description="Evaluate the freshness checks of every asset.",
    )
