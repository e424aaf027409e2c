"""How the windowed endpoints are cut into days."""

from __future__ import annotations

from datetime import date

from dagster import DailyPartitionsDefinition, TimeWindow

from billwerk_dagster.billwerk.window import Window


def daily_partitions(start_date: date) -> DailyPartitionsDefinition:
    """UTC days from `start_date` on, today's included so that intraday loads work."""
    return DailyPartitionsDefinition(
        start_date=start_date.isoformat(), timezone="UTC", end_offset=1
    )


def window_of(time_window: TimeWindow) -> Window:
    """The Billwerk window of a Dagster partition or partition range."""
    return Window(start=time_window.start, end=time_window.end)
