"""Benchmark the invoices+orders range run against a plain fetch of the same pages.

    python -m bench.run                                  # the whole matrix, 3 repeats each
    python -m bench.run --invoices 20000 --latency-ms 0  # one combination
    python -m bench.run --profile --invoices 20000       # where the time goes, in-process

For every combination of `--invoices` and `--latency-ms` this starts the local sandbox once,
then alternates (a) the plain fetch and (b) the real `dagster asset materialize` command
`--repeats` times, resetting the sandbox's counters before each. The medians and ratios are
printed, written to `bench/results/<date>-<invoices>-<latency>.json`, and `latest.md` is
rebuilt from the newest result of every combination.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path
from typing import Any

from bench.bound import plain_fetch
from bench.machine import ForeignCpu, describe_commit, describe_machine, wait_for_quiet
from bench.materialization import materialize_command, run_materialization
from bench.report import repeat_record, summarize, summary_lines, write_latest, write_result
from bench.workload import Workload, running_sandbox
from billwerk_dagster.sandbox import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SandboxClient
from billwerk_dagster.sandbox.control import SandboxProcess

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--invoices", type=int, nargs="+", default=[20_000, 200_000])
    parser.add_argument("--orders", type=int, default=3_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 200.0])
    parser.add_argument("--start", type=date.fromisoformat, default=date(2024, 1, 1))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per command")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--workdir", type=Path, help="default: a temporary folder")
    parser.add_argument("--keep", action="store_true", help="keep each run's folder and logs")
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=300,
        metavar="SECONDS",
        help="before each repeat, wait up to this long for other processes to go idle",
    )
    parser.add_argument(
        "--quiet-cores",
        type=float,
        default=0.3,
        help="quiet: other processes use fewer cores than this (default 0.3)",
    )
    parser.add_argument(
        "--max-noisy",
        type=int,
        default=4,
        help="extra repeats allowed to replace noisy ones (default 4)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for (b) and --profile, to try a variant",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile one in-process materialization instead of benchmarking",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="only rebuild latest.md from the result files"
    )
    return parser.parse_args(argv)


def benchmark(workload: Workload, args: argparse.Namespace, workdir: Path) -> bool:
    """One combination: the sandbox once, then (a) and (b) alternated. True if all ran.

    A repeat during which other processes kept more than `--quiet-cores` busy is noisy: it
    is kept in the results but left out of the medians, and another repeat is added, up to
    `--max-noisy` of them.
    """
    print(f"\n== {workload.describe()}", flush=True)
    if args.extra_env:
        print(f"   extra environment for (b): {args.extra_env}", flush=True)
    print(f"   (b) = {' '.join(materialize_command(workload)[1:])}", flush=True)
    machine, git = describe_machine(), describe_commit()

    repeats: list[dict[str, Any]] = []
    with running_sandbox(workload, workdir) as server:
        while sum(r["clean"] for r in repeats) < args.repeats:
            if len(repeats) >= args.repeats + args.max_noisy:
                print("   too many noisy repeats: giving up on a quiet machine", flush=True)
                break
            repeats.append(measure_repeat(workload, args, workdir, server, len(repeats) + 1))

    path = write_result(args.results_dir, workload, args.extra_env, machine, git, repeats)
    summary = summarize(repeats)
    print("\n".join(summary_lines(workload, summary)))
    print(f"   measured on {git['commit']}; written to {path}", flush=True)
    return summary["failed_runs"] == 0 and summary["rows_match_bound"]


def measure_repeat(
    workload: Workload,
    args: argparse.Namespace,
    workdir: Path,
    server: SandboxProcess,
    number: int,
) -> dict[str, Any]:
    """(a) then (b), each with the sandbox's counters reset, and the machine's noise."""
    sandbox = SandboxClient(server.url, timeout=60)
    waited, _ = wait_for_quiet(server.pid, args.quiet_cores, args.quiet_wait)
    whole = ForeignCpu(server.pid)

    sandbox.reset_stats()
    others = ForeignCpu(server.pid)
    bound = plain_fetch(server.url, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, workload.window)
    bound_others = others.cores()
    bound_stats = sandbox.stats()
    print(f"   repeat {number}: (a) {bound.seconds:.2f} s", end="", flush=True)

    run_dir = workdir / f"run-{workload.slug}-{number}"
    shutil.rmtree(run_dir, ignore_errors=True)
    sandbox.reset_stats()
    others = ForeignCpu(server.pid)
    run = run_materialization(server.url, workload, run_dir, args.timeout, args.extra_env)
    run_others = others.cores()
    run_stats = sandbox.stats()

    noise = whole.cores()
    clean = noise < args.quiet_cores
    step = "-" if run.step_seconds is None else f"{run.step_seconds:.2f} s"
    print(
        f", (b) step {step}, command {run.command_seconds:.2f} s, "
        f"peak RSS {run.peak_rss_tree_mb:,.0f} MB; others used {noise:.2f} cores"
        + ("" if clean else " (noisy: not in the medians)")
        + ("" if run.exit_code == 0 else f"; EXIT {run.exit_code}: see {run.log_path}"),
        flush=True,
    )
    if not args.keep and run.exit_code == 0:
        shutil.rmtree(run_dir, ignore_errors=True)

    record = repeat_record(bound, bound_stats, run, run_stats)
    record["bound"]["others_cores"] = bound_others
    record["materialization"]["others_cores"] = run_others
    return {**record, "others_cores": noise, "clean": clean, "quiet_wait_seconds": waited}


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    args.extra_env = dict(item.split("=", 1) for item in args.env)
    if args.report_only:
        print(write_latest(args.results_dir).read_text())
        return 0

    workloads = [
        Workload(invoices, args.orders, args.days, latency, args.start)
        for invoices in args.invoices
        for latency in args.latency_ms
    ]
    if args.profile and len(workloads) > 1:
        # Peak RSS per phase is the process's high-water mark: one process per workload.
        codes = [subprocess.run(_profile_command(args, w)).returncode for w in workloads]
        return max(codes)

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="billwerk-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.profile:
        from bench.profiling import profile_materialization

        profile_materialization(workloads[0], workdir, args.results_dir, args.extra_env)
        _clean(workdir, args)
        return 0

    all_ok = [benchmark(workload, args, workdir) for workload in workloads]
    latest = write_latest(args.results_dir)
    print(f"\n{latest.read_text()}")
    if all(all_ok):
        _clean(workdir, args)
        return 0
    print(f"Some runs failed; their logs are kept under {workdir}", file=sys.stderr)
    return 1


def _profile_command(args: argparse.Namespace, workload: Workload) -> list[str]:
    command = [
        sys.executable, "-m", "bench.run", "--profile",
        "--invoices", str(workload.invoices), "--latency-ms", f"{workload.latency_ms:g}",
        "--orders", str(workload.orders), "--days", str(workload.days),
        "--start", workload.start.isoformat(), "--results-dir", str(args.results_dir),
    ]  # fmt: skip
    command += [f"--env={item}" for item in args.env]
    if args.workdir is not None:
        command += ["--workdir", str(args.workdir)]
    return command + (["--keep"] if args.keep else [])


def _clean(workdir: Path, args: argparse.Namespace) -> None:
    if args.workdir is None and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
