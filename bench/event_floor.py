"""Dagster's own cost of a range run's materialization events, with nothing else in the step.

    python -m bench.event_floor            # 90 days, two assets, as the benchmark's range
    python -m bench.event_floor --days 30

A two-asset multi-asset, daily partitions and a single-run backfill policy like the
windowed assets, whose step does nothing but report both assets, with no metadata. In a
range run Dagster writes one materialization event per day and asset; the step's time, as
the event log records it, is what those events cost on a temporary SQLite instance like
the CLI's. Compare it with "step: materialization events" in `bench/results/latest.md`.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Iterator
from datetime import date, timedelta

from dagster import (
    AssetSpec,
    BackfillPolicy,
    DagsterEventType,
    DagsterInstance,
    DailyPartitionsDefinition,
    MaterializeResult,
    materialize,
    multi_asset,
)
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

START = date(2024, 1, 1)


def step_seconds(days: int) -> float:
    """The step's duration of one range run over `days` days of the two empty assets."""
    partitions = DailyPartitionsDefinition(start_date=START.isoformat())

    @multi_asset(
        specs=[AssetSpec("first"), AssetSpec("second")],
        partitions_def=partitions,
        backfill_policy=BackfillPolicy.single_run(),
    )
    def two_assets() -> Iterator[MaterializeResult]:
        yield MaterializeResult(asset_key="first")
        yield MaterializeResult(asset_key="second")

    last = START + timedelta(days=days - 1)
    tags = {
        ASSET_PARTITION_RANGE_START_TAG: START.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
    }
    with tempfile.TemporaryDirectory() as home, DagsterInstance.local_temp(home) as instance:
        result = materialize([two_assets], instance=instance, tags=tags)
        times = {
            entry.dagster_event.event_type: entry.timestamp
            for entry in instance.all_logs(result.run_id)
            if entry.dagster_event is not None
        }
    return times[DagsterEventType.STEP_SUCCESS] - times[DagsterEventType.STEP_START]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.event_floor", description=__doc__)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    seconds = statistics.median(step_seconds(args.days) for _ in range(args.repeats))
    events = 2 * args.days
    print(
        f"{events} materialization events, no metadata: step {seconds:.2f} s "
        f"(median of {args.repeats}), {1000 * seconds / events:.1f} ms per event"
    )


if __name__ == "__main__":
    main()
