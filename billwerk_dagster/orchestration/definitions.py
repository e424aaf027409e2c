"""Builds the project's Dagster definitions from settings."""

from __future__ import annotations

from dagster import (
    AssetsDefinition,
    Definitions,
    ExecutorDefinition,
    TimeWindowPartitionsDefinition,
    in_process_executor,
    multiprocess_executor,
)
from dagster_dlt import DagsterDltResource

from billwerk_dagster.billwerk.endpoints import INVOICES
from billwerk_dagster.orchestration.assets import asset_key, build_assets
from billwerk_dagster.orchestration.automation_settings import AutomationSettings
from billwerk_dagster.orchestration.checks import build_freshness_checks, build_warehouse_checks
from billwerk_dagster.orchestration.jobs import daily_job, freshness_job, new_invoices_job
from billwerk_dagster.orchestration.resources import BillwerkResource, WarehouseResource
from billwerk_dagster.orchestration.schedules import build_daily_schedule, build_freshness_schedule
from billwerk_dagster.orchestration.sensors import build_new_invoices_sensor
from billwerk_dagster.orchestration.settings import Settings


def build_definitions(
    settings: Settings | None = None,
    billwerk: BillwerkResource | None = None,
    automation: AutomationSettings | None = None,
    executor: ExecutorDefinition | None = None,
) -> Definitions:
    """Everything Dagster needs, from `settings` and `automation` (default: the environment).

    `executor` replaces the one `BILLWERK_EXECUTOR` names, e.g. a Celery or Kubernetes
    executor that runs the steps on other machines.
    """
    settings = settings or Settings.from_env()
    automation = automation or AutomationSettings.from_env()
    warehouse = WarehouseResource.from_settings(settings)
    assets = build_assets(settings.start_date, warehouse)
    days = _daily_partitions(assets)
    freshness_checks = build_freshness_checks(automation)

    daily = daily_job()
    new_invoices = new_invoices_job()
    freshness = freshness_job(freshness_checks)
    return Definitions(
        assets=assets,
        asset_checks=[build_warehouse_checks(), freshness_checks],
        jobs=[daily, new_invoices, freshness],
        schedules=[
            build_daily_schedule(daily, days, automation),
            build_freshness_schedule(freshness),
        ],
        sensors=[build_new_invoices_sensor(new_invoices, days, automation)],
        resources={
            "dlt": DagsterDltResource(),
            "billwerk": billwerk or BillwerkResource.from_env(),
            "warehouse": warehouse,
        },
        executor=executor or _executor(settings.executor),
    )


def _executor(name: str) -> ExecutorDefinition:
    return in_process_executor if name == "in_process" else multiprocess_executor


def _daily_partitions(assets: list[AssetsDefinition]) -> TimeWindowPartitionsDefinition:
    """The windowed assets' days, taken from them so that schedule and sensor agree."""
    key = asset_key(INVOICES)
    partitions = next(a.partitions_def for a in assets if key in a.keys)
    assert isinstance(partitions, TimeWindowPartitionsDefinition)
    return partitions
