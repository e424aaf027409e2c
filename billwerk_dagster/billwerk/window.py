"""A half-open time window [start, end) and how Billwerk wants its bounds written."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


def billwerk_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with Billwerk's seven fractional digits."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


@dataclass(frozen=True)
class Window:
    """Records created at or after `start` and before `end`, both timezone-aware."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"empty window: {self.start} .. {self.end}")

    @property
    def date_from(self) -> str:
        """The API's inclusive lower bound."""
        return billwerk_timestamp(self.start)

    @property
    def date_to(self) -> str:
        """The API's inclusive upper bound: the last 100 ns tick before `end`."""
        last_microsecond = billwerk_timestamp(self.end - timedelta(microseconds=1))
        return last_microsecond[:-2] + "9Z"

    def __str__(self) -> str:
        return f"{self.date_from}..{billwerk_timestamp(self.end)}"
