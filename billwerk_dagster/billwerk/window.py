"""A half-open time window [start, end) and how Billwerk wants its bounds written."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise

ONE_DAY = timedelta(days=1)


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

    def split(self, parts: int) -> list[Window]:
        """At most `parts` windows, cut at UTC midnights, that together cover exactly this one.

        They follow each other without gap or overlap, oldest first, and hold whole days as
        evenly as the days allow; a window within one UTC day stays whole.
        """
        if parts < 1:
            raise ValueError(f"cannot split a window into {parts} parts")
        midnights: list[datetime] = []
        midnight = datetime.combine(self.start.astimezone(UTC).date(), time(), UTC) + ONE_DAY
        while midnight < self.end:
            midnights.append(midnight)
            midnight += ONE_DAY

        # The midnights cut the window into pieces of a day (or less, at the ends); cut k
        # falls after the first k/count of them, so the parts differ by one day at most.
        pieces = len(midnights) + 1
        count = min(parts, pieces)
        cuts = [midnights[k * pieces // count - 1] for k in range(1, count)]
        return [Window(start, end) for start, end in pairwise([self.start, *cuts, self.end])]

    def __str__(self) -> str:
        return f"{self.date_from}..{billwerk_timestamp(self.end)}"
