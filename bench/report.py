"""Medians and ratios of a combination's repeats, its JSON file, and the markdown table.

Each combination's run writes one JSON file (`<date>-<invoices>-<latency>.json`, with a
suffix for a variant run with extra environment) holding every repeat's raw numbers.
`latest.md` is rebuilt from the newest file of each combination, so combinations measured
in separate runs end up in one table.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any

from bench.bound import FetchResult
from bench.materialization import RunResult
from bench.workload import Workload
from billwerk_dagster.sandbox import Stats

LATEST = "latest.md"
TIMELINE = (
    ("outside_run_seconds", "CLI start, code location load (outside the run)"),
    ("run_creation_seconds", "run creation (planned-materialization events)"),
    ("worker_start_seconds", "step worker process start"),
    ("pipeline_seconds", "step: fetch, extract, normalize, load"),
    ("step_events_seconds", "step: materialization events"),
    ("other_steps_seconds", "other steps (asset checks), after the step"),
    ("run_end_seconds", "run end"),
)


def sandbox_counts(stats: Stats) -> dict[str, Any]:
    return {
        "requests": dict(sorted(stats.requests.items())),
        "api_requests": stats.api_requests,
        "token_requests": stats.token_requests,
        "max_requests_per_second": stats.max_requests_per_second,
    }


def repeat_record(
    bound: FetchResult, bound_stats: Stats, run: RunResult, run_stats: Stats
) -> dict[str, Any]:
    return {
        "bound": {**asdict(bound), **sandbox_counts(bound_stats)},
        "materialization": {**asdict(run), **sandbox_counts(run_stats)},
    }


def summarize(all_repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the clean repeats (all, if none is clean), and (b)/(a) of the medians."""
    clean = [r for r in all_repeats if r.get("clean", True)]
    repeats = clean or all_repeats
    bounds = [r["bound"] for r in repeats]
    runs = [r["materialization"] for r in repeats]
    ok = [r for r in runs if r["exit_code"] == 0]
    steps = [r["step_seconds"] for r in ok if r["step_seconds"] is not None]

    bound_s = median(b["seconds"] for b in bounds)
    step_s = median(steps) if steps else None
    command_s = median(r["command_seconds"] for r in ok) if ok else None
    timeline = {
        key: median(values)
        for key, _ in TIMELINE
        if (values := [r["timeline"][key] for r in ok if key in r["timeline"]])
    }
    return {
        "repeats": len(repeats),
        "noisy_repeats": len(all_repeats) - len(clean),
        "failed_runs": sum(r["materialization"]["exit_code"] != 0 for r in all_repeats),
        "bound_seconds": bound_s,
        "step_seconds": step_s,
        "command_seconds": command_s,
        "step_ratio": step_s / bound_s if step_s is not None else None,
        "command_ratio": command_s / bound_s if command_s is not None else None,
        "bound_requests": median(b["api_requests"] for b in bounds),
        "bound_token_requests": max(b["token_requests"] for b in bounds),
        "run_requests": median(r["api_requests"] for r in runs),
        "run_token_requests": max(r["token_requests"] for r in runs),
        "peak_rss_tree_mb": max(r["peak_rss_tree_mb"] for r in ok) if ok else None,
        "peak_rss_single_mb": max(r["peak_rss_single_mb"] for r in ok) if ok else None,
        "peak_rss_tree_mb_median": median(r["peak_rss_tree_mb"] for r in ok) if ok else None,
        "materialization_events": max((r["materialization_events"] or 0) for r in ok)
        if ok
        else None,
        "timeline": timeline,
        # The same medians over every repeat, noisy ones included, to show what noise did.
        "all_repeats": _medians(all_repeats),
        "others_cores_max": max(r.get("others_cores", 0.0) for r in repeats),
        "rows_match_bound": all(
            r["materialization"]["rows"] == r["bound"]["records"] for r in all_repeats
        ),
    }


def _medians(repeats: list[dict[str, Any]]) -> dict[str, float | None]:
    ok = [r for r in repeats if r["materialization"]["exit_code"] == 0]
    steps = [r["materialization"]["step_seconds"] for r in ok]
    return {
        "repeats": len(repeats),
        "bound_seconds": median(r["bound"]["seconds"] for r in repeats),
        "step_seconds": median(s for s in steps if s is not None) if any(steps) else None,
        "command_seconds": median(r["materialization"]["command_seconds"] for r in ok)
        if ok
        else None,
    }


def variant_suffix(extra_env: dict[str, str]) -> str:
    if not extra_env:
        return ""
    described = ",".join(f"{k}={v}" for k, v in sorted(extra_env.items()))
    return "-variant-" + hashlib.sha256(described.encode()).hexdigest()[:8]


def write_result(
    results_dir: Path,
    workload: Workload,
    extra_env: dict[str, str],
    machine: dict[str, Any],
    git: dict[str, Any],
    repeats: list[dict[str, Any]],
) -> Path:
    now = datetime.now(UTC)
    document = {
        "measured_at": now.isoformat(timespec="seconds"),
        "workload": {**asdict(workload), "start": workload.start.isoformat()},
        "extra_env": extra_env,
        "git": git,
        "machine": machine,
        "summary": summarize(repeats),
        "repeats": repeats,
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    name = f"{now.date().isoformat()}-{workload.slug}{variant_suffix(extra_env)}.json"
    path = results_dir / name
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n")
    temporary.replace(path)
    return path


def summary_lines(workload: Workload, summary: dict[str, Any]) -> list[str]:
    """The console summary of one combination."""
    timeline = summary["timeline"]
    lines = [
        f"{workload.describe()}: medians of {summary['repeats']} repeats"
        + (f" ({summary['noisy_repeats']} noisy left out)" if summary["noisy_repeats"] else ""),
        f"  (a) plain fetch         {_s(summary['bound_seconds'])}",
        f"  (b) materialize step    {_s(summary['step_seconds'])}"
        f"   ratio {_x(summary['step_ratio'])}",
        f"  (b) whole command       {_s(summary['command_seconds'])}"
        f"   ratio {_x(summary['command_ratio'])}",
    ]
    if summary["noisy_repeats"]:
        every = summary["all_repeats"]
        lines.append(
            f"  all {every['repeats']} repeats, noisy too: (a) {_s(every['bound_seconds'])}, "
            f"step {_s(every['step_seconds'])}, command {_s(every['command_seconds'])}"
        )
    lines += [
        f"  requests (a) / (b)      {summary['bound_requests']:g} / {summary['run_requests']:g}",
        f"  token requests (a)/(b)  {summary['bound_token_requests']} / "
        f"{summary['run_token_requests']}",
        f"  peak RSS of (b)         tree {_mb(summary['peak_rss_tree_mb'])}, "
        f"largest process {_mb(summary['peak_rss_single_mb'])}",
        f"  materialization events  {summary['materialization_events']}",
        f"  others' CPU, max        {summary['others_cores_max']:.2f} cores"
        " (other processes on the machine, counted repeats)",
        f"  rows loaded = fetched   {summary['rows_match_bound']}"
        + (f"   FAILED RUNS: {summary['failed_runs']}" if summary["failed_runs"] else ""),
        "  (b) command, by the event log:",
    ]
    lines += [f"    {label:<50} {_s(timeline.get(key))}" for key, label in TIMELINE]
    return lines


def write_latest(results_dir: Path) -> Path:
    """`latest.md`: the newest result of every combination, the machine, the timelines."""
    newest: dict[tuple[int, float, str], dict[str, Any]] = {}
    for path in sorted(results_dir.glob("*.json")):
        document = json.loads(path.read_text())
        if "summary" not in document:
            continue
        workload = document["workload"]
        variant = variant_suffix(document.get("extra_env") or {})
        key = (workload["invoices"], workload["latency_ms"], variant)
        if key not in newest or document["measured_at"] >= newest[key]["measured_at"]:
            # Summaries are recomputed, so a file from an older harness reads the same way.
            summary = summarize(document["repeats"])
            newest[key] = {**document, "summary": summary, "file": path.name}
    documents = [d for _, d in sorted(newest.items())]
    plain = [d for d in documents if not d.get("extra_env")]
    variants = [d for d in documents if d.get("extra_env")]

    lines = [
        "# Benchmark: plain fetch (a) versus `dagster asset materialize` (b)",
        "",
        "Generated by `python -m bench.run` from the newest result file of each combination.",
        "Times are medians over the repeats; ratios are (b) / (a). Peak RSS is the largest sum",
        "over the command's process tree (and the largest single process), sampled every 50 ms.",
        "Others' CPU: the most cores other processes on the machine used during a counted repeat.",
        "Each repeat first waits for the machine to go quiet; a repeat during which others used",
        "more than `--quiet-cores` is kept in the JSON but left out of the medians (noisy).",
        "",
        *_main_table(plain),
    ]
    noisy = [d for d in plain if d["summary"]["noisy_repeats"]]
    if noisy:
        lines += [
            "",
            "Medians over every repeat, noisy ones included (what the noise did):",
            "",
            "| invoices | latency | repeats | (a) fetch | (b) step | (b) command |",
            "|---:|---:|---:|---:|---:|---:|",
        ]
        for d in noisy:
            every = d["summary"]["all_repeats"]
            lines.append(
                f"| {d['workload']['invoices']:,} | {d['workload']['latency_ms']:g} ms "
                f"| {every['repeats']} | {_s(every['bound_seconds'])} "
                f"| {_s(every['step_seconds'])} | {_s(every['command_seconds'])} |"
            )
    if variants:
        lines += [
            "",
            "## Variants (extra environment for (b))",
            "",
            *_main_table(variants, with_env=True),
        ]
    lines += ["", "## Where (b)'s command time goes (medians, from the event log)", ""]
    lines += _timeline_table(documents)
    if documents:
        machine = max(documents, key=lambda d: d["measured_at"])["machine"]
        packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items())
        lines += [
            "",
            f"Machine: {machine['nproc']} CPUs ({machine['cpu_model']}), "
            f"{machine['memory_gb']} GB memory, {machine['os']}; Python {machine['python']}; "
            f"{packages}.",
            "",
            "Files: " + ", ".join(f"`{d['file']}`" for d in documents) + ".",
        ]
    path = results_dir / LATEST
    path.write_text("\n".join(lines) + "\n")
    return path


def _main_table(documents: list[dict[str, Any]], with_env: bool = False) -> list[str]:
    env_head, env_rule = ("| extra env ", "|---") if with_env else ("", "")
    lines = [
        f"| invoices | orders | latency {env_head}| repeats | (a) fetch | (b) step "
        "| (b) command | step / fetch | command / fetch | requests (a) / (b) "
        "| tokens (a) / (b) | peak RSS tree / process | rows ok | others' CPU | commit |",
        f"|---:|---:|---:{env_rule}|---:|---:|---:|---:|---:|---:|---:|---:|---:|:-:|---:|---|",
    ]
    for d in documents:
        w, s = d["workload"], d["summary"]
        env = ""
        if with_env:
            described = " ".join(f"`{k}={v}`" for k, v in sorted(d["extra_env"].items()))
            env = f"| {described} ({variant_suffix(d['extra_env']).removeprefix('-')}) "
        lines.append(
            f"| {w['invoices']:,} | {w['orders']:,} | {w['latency_ms']:g} ms {env}"
            f"| {s['repeats']}{_noisy(s)} | {_s(s['bound_seconds'])} | {_s(s['step_seconds'])} "
            f"| {_s(s['command_seconds'])} | {_x(s['step_ratio'])} | {_x(s['command_ratio'])} "
            f"| {s['bound_requests']:g} / {s['run_requests']:g} "
            f"| {s['bound_token_requests']} / {s['run_token_requests']} "
            f"| {_mb(s['peak_rss_tree_mb'])} / {_mb(s['peak_rss_single_mb'])} "
            f"| {'yes' if s['rows_match_bound'] else 'NO'} "
            f"| {s.get('others_cores_max', 0.0):.2f} | `{d['git']['commit']}` |"
        )
    return lines


def _timeline_table(documents: list[dict[str, Any]]) -> list[str]:
    heads = [
        f"{d['workload']['invoices']:,} / {d['workload']['latency_ms']:g} ms"
        + (f" ({variant_suffix(d['extra_env']).removeprefix('-')})" if d.get("extra_env") else "")
        for d in documents
    ]
    lines = [
        "| | " + " | ".join(heads) + " |",
        "|---|" + "---:|" * len(documents),
    ]
    for key, label in TIMELINE:
        cells = [_s(d["summary"].get("timeline", {}).get(key)) for d in documents]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    cells = [_s(d["summary"]["command_seconds"]) for d in documents]
    lines.append("| **whole command** | " + " | ".join(cells) + " |")
    cells = [str(d["summary"]["materialization_events"]) for d in documents]
    lines.append("| materialization events | " + " | ".join(cells) + " |")
    return lines


def _noisy(summary: dict[str, Any]) -> str:
    noisy = summary.get("noisy_repeats", 0)
    return f" (+{noisy} noisy)" if noisy else ""


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} MB"
