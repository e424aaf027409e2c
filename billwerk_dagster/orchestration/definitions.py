"""Builds the project's Dagster definitions from settings."""

from __future__ import annotations

from dagster import Definitions
from dagster_dlt import DagsterDltResource

from billwerk_dagster.orchestration.assets import build_assets
from billwerk_dagster.orchestration.resources import BillwerkResource, WarehouseResource
from billwerk_dagster.orchestration.settings import Settings


def build_definitions(
    settings: Settings | None = None, billwerk: BillwerkResource | None = None
) -> Definitions:
    """Everything Dagster needs, from `settings` (default: the environment)."""
    settings = settings or Settings.from_env()
    warehouse = WarehouseResource.from_settings(settings)
    return Definitions(
        assets=build_assets(settings.start_date, warehouse),
        resources={
            "dlt": DagsterDltResource(),
            "billwerk": billwerk or BillwerkResource.from_env(),
            "warehouse": warehouse,
        },
    )
