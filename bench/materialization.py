"""The project's side: `dagster asset materialize` as a user runs it, measured from outside.

Each run gets a fresh, empty DAGSTER_HOME, DuckDB file and dlt pipelines folder. While the
command runs, a thread samples the resident memory of its whole process tree (the CLI, the
step's worker process, anything they start). Afterwards the step's duration is read from
the run's event log in that DAGSTER_HOME, as Dagster itself reports it.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import psutil

from bench.workload import Workload
from billwerk_dagster.billwerk.endpoints import WINDOWED_ENDPOINTS
from billwerk_dagster.orchestration.assets import asset_key
from billwerk_dagster.orchestration.settings import DATASET_NAME, PROJECT_ROOT
from billwerk_dagster.sandbox import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

SAMPLE_INTERVAL_S = 0.05
MB = 1024 * 1024

_STEP_FINISHED = re.compile(r'Finished execution of step "[^"]+" in ([0-9.hms]+)\.')
_FETCHED = re.compile(r"(\w+): (\d+) rows loaded from (\d+) pages, (\d+) requests, ([0-9.]+)s")


@dataclass
class RunResult:
    """One `dagster asset materialize` command, measured."""

    exit_code: int
    command_seconds: float
    step_seconds: float | None
    peak_rss_tree_mb: float
    peak_rss_single_mb: float
    rss_samples: int
    materialization_events: int | None
    # Where the command's time went, from the event log's timestamps (see `_timeline`).
    timeline: dict[str, float] = field(default_factory=dict)
    fetch_seconds: dict[str, float] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    log_path: str = ""


class TreeMemory:
    """Samples the RSS of a process and all its descendants until stopped."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak_total = 0
        self.peak_single = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(SAMPLE_INTERVAL_S)

    def sample(self) -> None:
        try:
            processes = [self.root, *self.root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0
        for process in processes:
            try:
                rss = process.memory_info().rss
            except psutil.Error:
                continue  # ended between listing and reading
            total += rss
            self.peak_single = max(self.peak_single, rss)
        self.peak_total = max(self.peak_total, total)
        self.samples += 1


def run_environment(
    url: str, workload: Workload, run_dir: Path, extra: dict[str, str] | None = None
) -> dict[str, str]:
    """The variables a user sets, all state under `run_dir`, nothing shared between runs.

    At 0 ms latency the request rate is lifted (see `Workload.max_requests_per_second`).
    `extra` adds variables to try a variant, e.g. a dlt setting.
    """
    data_dir = run_dir / "data"
    home = run_dir / "dagster_home"
    home.mkdir(parents=True)
    return {
        **os.environ,
        "BILLWERK_BASE_URL": url,
        "BILLWERK_CLIENT_ID": DEFAULT_CLIENT_ID,
        "BILLWERK_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "BILLWERK_START_DATE": workload.start.isoformat(),
        "BILLWERK_DATA_DIR": str(data_dir),
        "BILLWERK_DUCKDB_PATH": str(data_dir / "warehouse.duckdb"),
        "BILLWERK_PIPELINES_DIR": str(data_dir / "dlt_pipelines"),
        "DLT_DATA_DIR": str(run_dir / "dlt_data"),
        "DAGSTER_HOME": str(home),
        "BILLWERK_MAX_REQUESTS_PER_SECOND": f"{workload.max_requests_per_second:g}",
        **(extra or {}),
    }


def materialize_command(workload: Workload) -> list[str]:
    selection = ",".join(asset_key(e).to_user_string() for e in WINDOWED_ENDPOINTS)
    return [
        sys.executable, "-m", "dagster", "asset", "materialize",
        "-m", "billwerk_dagster.definitions", "--select", selection,
        "--partition-range", workload.partition_range,
    ]  # fmt: skip


def run_materialization(
    url: str,
    workload: Workload,
    run_dir: Path,
    timeout_s: float,
    extra_env: dict[str, str] | None = None,
) -> RunResult:
    """Run the CLI once in a fresh environment under `run_dir`; measure it from outside."""
    env = run_environment(url, workload, run_dir, extra_env)
    log_path = run_dir / "materialize.log"

    with log_path.open("w") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            materialize_command(workload), env=env, cwd=PROJECT_ROOT, stdout=log, stderr=log
        )
        with TreeMemory(process.pid) as memory:
            try:
                exit_code = process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                _kill_tree(process.pid)
                exit_code = process.wait()
        command_seconds = time.perf_counter() - started

    output = log_path.read_text(errors="replace")
    home = Path(env["DAGSTER_HOME"])
    step_seconds, events, timeline = _from_event_log(home)
    if step_seconds is None:
        step_seconds = _step_seconds_from_output(output)
    if "run_seconds" in timeline:
        timeline["outside_run_seconds"] = command_seconds - timeline["run_seconds"]
    return RunResult(
        exit_code=exit_code,
        command_seconds=command_seconds,
        step_seconds=step_seconds,
        peak_rss_tree_mb=memory.peak_total / MB,
        peak_rss_single_mb=memory.peak_single / MB,
        rss_samples=memory.samples,
        materialization_events=events,
        timeline=timeline,
        fetch_seconds={m[0]: float(m[4]) for m in _FETCHED.findall(output)},
        rows=_row_counts(Path(env["BILLWERK_DUCKDB_PATH"])) if exit_code == 0 else {},
        log_path=str(log_path),
    )


def _kill_tree(pid: int) -> None:
    try:
        root = psutil.Process(pid)
        processes = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()


def _from_event_log(home: Path) -> tuple[float | None, int | None, dict[str, float]]:
    """The materializing step's duration as Dagster recorded it, its materializations, and
    the run's timeline (see `_timeline`)."""
    from dagster import DagsterEventType, DagsterInstance
    from dagster._core.instance.ref import InstanceRef

    try:
        with DagsterInstance.from_ref(InstanceRef.from_dir(str(home))) as instance:
            runs = instance.get_runs(limit=1)
            if not runs:
                return None, None, {}
            entries = instance.all_logs(runs[0].run_id)
    except Exception:  # an unreadable event log falls back to parsing the output
        return None, None, {}

    events = [(e.timestamp, e.step_key, e.dagster_event) for e in entries if e.dagster_event]
    materializing = {
        step for _, step, event in events
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION
    }  # fmt: skip
    step_ms = [
        event.event_specific_data.duration_ms  # type: ignore[union-attr]
        for _, step, event in events
        if step in materializing and event.event_type == DagsterEventType.STEP_SUCCESS
    ]
    count = sum(1 for _, _, e in events if e.event_type == DagsterEventType.ASSET_MATERIALIZATION)
    timeline = _timeline(events, materializing, entries[0].timestamp, entries[-1].timestamp)
    return (sum(step_ms) / 1000 if step_ms else None), count, timeline


def _timeline(
    events: list[tuple[float, str | None, Any]], main: set[str | None], start: float, end: float
) -> dict[str, float]:
    """Spans of the run, in seconds, between the first events of each kind.

    run_creation: the run's first event (a planned materialization per partition and asset)
    to RUN_START; worker_start: launching the materializing step's process to its
    STEP_START; pipeline: to its first output (dagster-dlt yields after dlt's run, so this is
    fetch, extract, normalize and load); step_events: to its STEP_SUCCESS (writing the
    materialization events); other_steps: to the end of the last other step (asset checks);
    run_end: to RUN_SUCCESS; run: the whole event log.
    """
    from dagster import DagsterEventType as T

    first: dict[Any, float] = {}
    other_steps_end: float | None = None
    for at, step, event in events:
        kind = event.event_type
        if step is None or step in main:
            first.setdefault(kind, at)
        elif kind in (T.STEP_SUCCESS, T.STEP_FAILURE):
            other_steps_end = at

    main_end = first.get(T.STEP_SUCCESS)
    steps_end = max(main_end or 0.0, other_steps_end or 0.0) or None
    spans = {
        "run_creation_seconds": (start, first.get(T.PIPELINE_START)),
        "worker_start_seconds": (first.get(T.STEP_WORKER_STARTING), first.get(T.STEP_START)),
        "pipeline_seconds": (first.get(T.STEP_START), first.get(T.STEP_OUTPUT)),
        "step_events_seconds": (first.get(T.STEP_OUTPUT), main_end),
        "other_steps_seconds": (main_end, steps_end),
        "run_end_seconds": (steps_end, first.get(T.PIPELINE_SUCCESS)),
    }
    timeline = {"run_seconds": end - start}
    for name, (since, until) in spans.items():
        if since is not None and until is not None:
            timeline[name] = until - since
    return timeline


def _step_seconds_from_output(output: str) -> float | None:
    """Parse `Finished execution of step "x" in 4m52s.` (Dagster's rounded format)."""
    found = _STEP_FINISHED.findall(output)
    if not found:
        return None
    total = 0.0
    for text in found:
        if text.endswith("ms"):
            total += float(text[:-2]) / 1000
            continue
        for amount, unit in re.findall(r"([0-9.]+)([hms])", text):
            total += float(amount) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


def _row_counts(duckdb_path: Path) -> dict[str, int]:
    with duckdb.connect(str(duckdb_path), read_only=True) as db:
        return {
            e.name: int(db.execute(f"select count(*) from {DATASET_NAME}.{e.name}").fetchone()[0])  # type: ignore[index]
            for e in WINDOWED_ENDPOINTS
        }
