"""Where a materialization's time goes: phase clocks, then cProfile, both in-process.

The range run of invoices and orders is materialized twice with `dagster.materialize`, on a
temporary instance with the same SQLite storage the CLI uses. The first run is timed by
light wrappers around the functions that bound each phase (HTTP, JSON, dlt's extract,
normalize and load, Dagster's event writes): exclusive wall time, no profiler overhead.
The second runs under cProfile, every thread included (dlt loads from a thread pool), for
the functions that cost the most in the project's code, in dlt and in Dagster.
"""

from __future__ import annotations

import contextlib
import cProfile
import io
import os
import pstats
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.machine import ForeignCpu, wait_for_quiet
from bench.report import variant_suffix
from bench.workload import Workload, running_sandbox
from billwerk_dagster.orchestration.settings import PROJECT_ROOT

TOP = 10
QUIET_CORES = 0.3
QUIET_WAIT_S = 300
# Package folders that name a group in the function tables; order matters ("dagster_dlt"
# belongs to Dagster's side here, as the glue that turns dlt results into events).
GROUPS = {
    "project": ("/billwerk_dagster/",),
    "dlt": ("/site-packages/dlt/",),
    "dagster": ("/site-packages/dagster", "/site-packages/dagster_dlt/"),
}
OTHER = "Dagster run and step machinery, dagster-dlt, other"


class PhaseClock:
    """Exclusive wall time per phase: entering a phase pauses the one it runs inside.

    Only the thread that materializes is timed; dlt's load threads are waited for inside
    the load phase, so their time is in it. Each phase also notes the process's peak RSS
    when it last ended, which shows the phase that raised it.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.start_peak_mb = _peak_rss_mb()
        self.peak_mb: dict[str, float] = {}
        self._stack: list[tuple[str, float]] = []
        self._thread = threading.get_ident()

    def wrap(self, phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != self._thread:
                return function(*args, **kwargs)
            self._enter(phase)
            try:
                return function(*args, **kwargs)
            finally:
                self._leave()

        return timed

    def _enter(self, phase: str) -> None:
        now = time.perf_counter()
        if self._stack:
            outer, since = self._stack[-1]
            self.seconds[outer] += now - since
        self._stack.append((phase, now))
        self.calls[phase] += 1

    def _leave(self) -> None:
        now = time.perf_counter()
        phase, since = self._stack.pop()
        self.seconds[phase] += now - since
        self.peak_mb[phase] = _peak_rss_mb()
        if self._stack:
            outer, _ = self._stack[-1]
            self._stack[-1] = (outer, now)


def _peak_rss_mb() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@contextlib.contextmanager
def phase_clock() -> Iterator[PhaseClock]:
    """Time the phases of everything materialized in the block."""
    import requests
    from dagster import DagsterInstance
    from dlt.pipeline.pipeline import Pipeline

    from billwerk_dagster.billwerk import client, tables

    clock = PhaseClock()
    targets: list[tuple[Any, str, str]] = [
        (requests.Session, "send", "HTTP fetch (requests, waiting on the API)"),
        (client, "parse_body", "JSON parse (orjson)"),
        (tables.PageConverter, "convert", "Arrow tables built (billwerk/tables.py)"),
        (Pipeline, "extract", "dlt extract (parquet item files)"),
        (Pipeline, "normalize", "dlt normalize"),
        (Pipeline, "load", "dlt load (DuckDB)"),
        (DagsterInstance, "handle_new_event", "Dagster events (event log writes)"),
    ]
    originals = [(owner, name, owner.__dict__.get(name)) for owner, name, _ in targets]
    try:
        for owner, name, phase in targets:
            setattr(owner, name, clock.wrap(phase, getattr(owner, name)))
        yield clock
    finally:
        for owner, name, original in originals:
            if original is None:
                delattr(owner, name)  # it was inherited: drop our override
            else:
                setattr(owner, name, original)


@contextlib.contextmanager
def profiling_all_threads() -> Iterator[list[cProfile.Profile]]:
    """cProfile the calling thread and every thread started in the block."""
    profiles = [cProfile.Profile()]
    original_run = threading.Thread.run

    def run(thread: threading.Thread) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.enable()
        try:
            original_run(thread)
        finally:
            profile.disable()

    threading.Thread.run = run  # type: ignore[method-assign, assignment]
    profiles[0].enable()
    try:
        yield profiles
    finally:
        profiles[0].disable()
        threading.Thread.run = original_run  # type: ignore[method-assign]


def materialize_range(url: str, workload: Workload, workdir: Path) -> float:
    """Materialize invoices and orders over the workload's days in-process; wall seconds."""
    from dagster import DagsterInstance, materialize
    from dagster._core.storage.tags import (
        ASSET_PARTITION_RANGE_END_TAG,
        ASSET_PARTITION_RANGE_START_TAG,
    )

    from billwerk_dagster.billwerk.endpoints import WINDOWED_ENDPOINTS
    from billwerk_dagster.orchestration.assets import asset_key
    from billwerk_dagster.orchestration.definitions import build_definitions
    from billwerk_dagster.orchestration.resources import BillwerkResource
    from billwerk_dagster.orchestration.settings import Settings
    from billwerk_dagster.sandbox import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

    run_dir = Path(tempfile.mkdtemp(prefix="profile-", dir=workdir))
    settings = Settings(
        start_date=workload.start,
        destination="duckdb",
        duckdb_path=run_dir / "warehouse.duckdb",
        pipelines_dir=run_dir / "dlt_pipelines",
    )
    # One worker: the clock times the materializing thread only, so the fetch and the JSON
    # parse must happen there to be seen as phases of their own.
    billwerk = BillwerkResource(
        base_url=url,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
        workers=1,
        max_requests_per_second=workload.max_requests_per_second,
    )
    defs = build_definitions(settings, billwerk=billwerk)
    tags = {
        ASSET_PARTITION_RANGE_START_TAG: workload.start.isoformat(),
        ASSET_PARTITION_RANGE_END_TAG: workload.last_day.isoformat(),
    }
    (run_dir / "dagster_home").mkdir()

    with (
        DagsterInstance.local_temp(str(run_dir / "dagster_home")) as instance,
        (run_dir / "output.log").open("w") as log,
        contextlib.redirect_stderr(log),
        contextlib.redirect_stdout(log),
    ):
        started = time.perf_counter()
        result = materialize(
            list(defs.assets or []),  # type: ignore[arg-type]
            resources=defs.resources,
            selection=[asset_key(e) for e in WINDOWED_ENDPOINTS],
            tags=tags,
            instance=instance,
        )
        seconds = time.perf_counter() - started
    if not result.success:
        raise RuntimeError(f"the profiled materialization failed; see {run_dir / 'output.log'}")
    return seconds


def import_seconds() -> float:
    """What loading the code location costs a fresh process (the CLI does it twice)."""
    code = (
        "import time; t = time.perf_counter(); import billwerk_dagster.definitions; "
        "print(time.perf_counter() - t)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    return float(done.stdout.strip().splitlines()[-1])


def top_functions(stats: pstats.Stats, group: str | None, key: str) -> list[str]:
    """The TOP functions of `group` (None: any) by `key` ("cumulative" or "tottime").

    By cumulative time, a call chain whose functions all take the same time (a wrapper
    calling a wrapper) is shown once, by its outermost function.
    """
    rows = []
    for (filename, line, name), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
        if group is None or any(part in filename for part in GROUPS[group]):
            rows.append((cumtime if key == "cumulative" else tottime, calls, tottime, cumtime,
                         _short(filename), line, name))  # fmt: skip
    rows.sort(key=lambda row: row[0], reverse=True)

    kept: list[tuple[Any, ...]] = []
    for row in rows:
        if len(kept) == TOP:
            break
        if key == "cumulative" and kept and kept[-1][3] - row[3] <= 0.01 * kept[-1][3]:
            continue
        kept.append(row)
    return [
        f"| {cum:.2f} | {tot:.2f} | {calls:,} | `{name}` | {path}:{line} |"
        for _, calls, tot, cum, path, line, name in kept
    ]


def _short(filename: str) -> str:
    for marker in ("/site-packages/", str(PROJECT_ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


@contextlib.contextmanager
def environment(extra: dict[str, str]) -> Iterator[None]:
    """`extra` set in this process's environment for the block (dlt reads its config there)."""
    saved = {name: os.environ.get(name) for name in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def profile_materialization(
    workload: Workload, workdir: Path, results_dir: Path, extra_env: dict[str, str]
) -> Path:
    """Run both passes against a fresh sandbox; print and write the summary as markdown."""
    print(f"\n== profile: {workload.describe()}", flush=True)
    if extra_env:
        print(f"   extra environment: {extra_env}", flush=True)
    with running_sandbox(workload, workdir) as sandbox, environment(extra_env):
        url = sandbox.url
        wait_for_quiet(sandbox.pid, QUIET_CORES, QUIET_WAIT_S)
        others = ForeignCpu(sandbox.pid)
        with phase_clock() as clock:
            timed_wall = materialize_range(url, workload, workdir)
        timed_peak_mb = _peak_rss_mb()
        others_cores = others.cores()
        print(f"   timed run {timed_wall:.2f} s; others used {others_cores:.2f} cores", flush=True)

        with profiling_all_threads() as profiles:
            profiled_wall = materialize_range(url, workload, workdir)
        print(f"   profiled run {profiled_wall:.2f} s (cProfile overhead included)", flush=True)
    imports = import_seconds()

    text = io.StringIO()
    stats = pstats.Stats(profiles[0], stream=text)
    for profile in profiles[1:]:
        stats.add(profile)
    stats.dump_stats(workdir / f"profile-{workload.slug}.prof")
    stats.sort_stats("cumulative").print_stats(60)

    lines = [
        f"# Profile: {workload.describe()}",
        "",
        f"In-process `dagster.materialize` of the invoices+orders range "
        f"{workload.partition_range} on a SQLite-backed temporary instance, "
        f"{datetime.now(UTC).isoformat(timespec='seconds')}"
        + (f", extra environment {extra_env}." if extra_env else ".")
        + f" Other processes used {others_cores:.2f} cores during the timed run.",
        "",
        "## Phases (exclusive wall time, no profiler)",
        "",
        "Peak RSS is this process's high-water mark when the phase last ended (it includes",
        f"the {clock.start_peak_mb:,.0f} MB it had before the run: Python, Dagster, dlt).",
        "",
        "| phase | seconds | share | calls | peak RSS after |",
        "|---|---:|---:|---:|---:|",
    ]
    accounted = sum(clock.seconds.values())
    phases = [*clock.seconds.items(), (OTHER, timed_wall - accounted)]
    for phase, seconds in phases:
        calls = clock.calls.get(phase, "")
        peak = f"{clock.peak_mb[phase]:,.0f} MB" if phase in clock.peak_mb else ""
        lines.append(f"| {phase} | {seconds:.2f} | {seconds / timed_wall:.0%} | {calls} | {peak} |")
    lines += [
        f"| **whole in-process materialization** | **{timed_wall:.2f}** | 100% | "
        f"| {timed_peak_mb:,.0f} MB |",
        "",
        f"Not in the in-process run, but in every CLI run: importing the code location takes "
        f"{imports:.2f} s in a fresh process, and `dagster asset materialize` does it in the "
        "CLI process and again in the step's worker process.",
        "",
        "cProfile's overhead inflates pure-Python work (normalize) more than waiting on I/O",
        "(SQLite commits), so its shares differ from the phase clock's. In the cumulative",
        "tables a chain of wrappers with the same time is shown once, by its outermost call.",
        "",
    ]
    tables: list[tuple[str | None, str]] = [
        (group, key) for group in GROUPS for key in ("cumulative", "tottime")
    ]
    for group, key in [*tables, (None, "tottime")]:
        label = "cumulative" if key == "cumulative" else "own (self)"
        lines += [
            f"## Top {TOP} {group or 'functions anywhere (C code included)'} "
            f"{'functions ' if group else ''}by {label} time (cProfile, all threads)",
            "",
            "| cumulative s | own s | calls | function | where |",
            "|---:|---:|---:|---|---|",
            *top_functions(stats, group, key),
            "",
        ]
    lines += ["## cProfile, top 60 by cumulative time", "", "```", text.getvalue().strip(), "```"]

    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).date().isoformat()
    path = results_dir / f"{stamp}-profile-{workload.slug}{variant_suffix(extra_env)}.md"
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[: lines.index("## cProfile, top 60 by cumulative time")]), flush=True)
    print(f"   written to {path}", flush=True)
    return path
