"""When the project runs by itself: the schedule, the look-back, the sensor's pace.

Read from the environment once, when the definitions are built, like `Settings`. Each
value has a default that suits a daily-billing account, so none of them has to be set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from dagster._utils.schedules import is_valid_cron_string

from billwerk_dagster.billwerk.errors import BillwerkConfigError

DEFAULT_SCHEDULE_CRON = "0 2 * * *"
DEFAULT_LOOKBACK_DAYS = 7
DEFAULT_SENSOR_INTERVAL_SECONDS = 300
DEFAULT_FRESHNESS_GRACE_HOURS = 3
# Faster polling buys little and unauthenticated bursts can get an IP banned upstream.
MIN_SENSOR_INTERVAL_SECONDS = 30
MAX_LOOKBACK_DAYS = 366


@dataclass(frozen=True)
class AutomationSettings:
    """The daily schedule's cron (UTC), how many days before yesterday it reloads, how
    often the new-invoices sensor polls, and how long a scheduled run may take before
    the freshness checks call its assets late."""

    schedule_cron: str = DEFAULT_SCHEDULE_CRON
    lookback_days: int = DEFAULT_LOOKBACK_DAYS
    sensor_interval_seconds: int = DEFAULT_SENSOR_INTERVAL_SECONDS
    freshness_grace_hours: int = DEFAULT_FRESHNESS_GRACE_HOURS

    def __post_init__(self) -> None:
        if not is_valid_cron_string(self.schedule_cron):
            raise BillwerkConfigError(
                f"BILLWERK_SCHEDULE_CRON must be a cron expression of five fields such as "
                f"{DEFAULT_SCHEDULE_CRON!r} (02:00 UTC daily), got {self.schedule_cron!r}."
            )
        _check_range("BILLWERK_LOOKBACK_DAYS", self.lookback_days, 0, MAX_LOOKBACK_DAYS)
        _check_range(
            "BILLWERK_SENSOR_INTERVAL_SECONDS",
            self.sensor_interval_seconds,
            MIN_SENSOR_INTERVAL_SECONDS,
            None,
        )
        _check_range("BILLWERK_FRESHNESS_GRACE_HOURS", self.freshness_grace_hours, 0, None)

    @property
    def freshness_grace(self) -> timedelta:
        return timedelta(hours=self.freshness_grace_hours)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> AutomationSettings:
        env = os.environ if environ is None else environ
        return cls(
            schedule_cron=(env.get("BILLWERK_SCHEDULE_CRON") or DEFAULT_SCHEDULE_CRON).strip(),
            lookback_days=_integer(env, "BILLWERK_LOOKBACK_DAYS", DEFAULT_LOOKBACK_DAYS),
            sensor_interval_seconds=_integer(
                env, "BILLWERK_SENSOR_INTERVAL_SECONDS", DEFAULT_SENSOR_INTERVAL_SECONDS
            ),
            freshness_grace_hours=_integer(
                env, "BILLWERK_FRESHNESS_GRACE_HOURS", DEFAULT_FRESHNESS_GRACE_HOURS
            ),
        )


def _integer(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        return int(raw.strip())
    except ValueError:
        raise BillwerkConfigError(f"{name} must be a whole number, got {raw!r}.") from None


def _check_range(name: str, value: int, low: int, high: int | None) -> None:
    if value < low or (high is not None and value > high):
        allowed = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise BillwerkConfigError(f"{name} must be {allowed}, got {value}.")
