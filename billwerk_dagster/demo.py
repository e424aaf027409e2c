"""The README's main job: a local Billwerk sandbox loaded into DuckDB through Dagster.

Starts the sandbox in a subprocess, materializes the snapshots and then every day of the
sandbox's range through the Dagster CLI (the same commands a user would type), and prints
the row count of every table. `--ui` instead opens the Dagster UI on the same setup.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path

import duckdb

from billwerk_dagster.billwerk.endpoints import SNAPSHOT_ENDPOINTS, WINDOWED_ENDPOINTS
from billwerk_dagster.orchestration.assets import asset_key
from billwerk_dagster.orchestration.settings import PROJECT_ROOT, Settings
from billwerk_dagster.sandbox import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from billwerk_dagster.sandbox.control import sandbox_process

DEMO_START = date(2024, 1, 1)
DEMO_DAYS = 90
DATA_DIR = PROJECT_ROOT / "data"
INSTANCE_CONFIG = PROJECT_ROOT / "dagster.yaml"
WORKSPACE = PROJECT_ROOT / "workspace.yaml"


@contextmanager
def running_sandbox(days: int, invoices: int) -> Iterator[str]:
    """A sandbox in a subprocess for as long as the block runs; yields its URL."""
    with (
        tempfile.TemporaryDirectory() as tmp,
        sandbox_process(
            Path(tmp),
            "--start",
            DEMO_START.isoformat(),
            "--days",
            str(days),
            "--invoices",
            str(invoices),
            "--log-level",
            "INFO",
        ) as url,  # fmt: skip
    ):
        yield url


def demo_environment(url: str) -> dict[str, str]:
    """The environment a user would set for a real account, pointed at the sandbox.

    Dagster keeps its instance in data/dagster_home unless DAGSTER_HOME names another
    folder; the repository's dagster.yaml (run queue, the warehouse pool) is linked into it.
    """
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or DATA_DIR / "dagster_home")
    link_instance_config(dagster_home)
    return {
        **os.environ,
        "BILLWERK_BASE_URL": url,
        "BILLWERK_CLIENT_ID": DEFAULT_CLIENT_ID,
        "BILLWERK_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "BILLWERK_START_DATE": DEMO_START.isoformat(),
        "DAGSTER_HOME": str(dagster_home),
    }


def link_instance_config(dagster_home: Path) -> None:
    """Point `dagster_home/dagster.yaml` at the repository's, unless a file of its own is there.

    A link, not a copy: editing the repository's file changes the instance on next start.
    """
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / INSTANCE_CONFIG.name
    if config.exists() and not config.is_symlink():
        if config.read_bytes() != INSTANCE_CONFIG.read_bytes():
            print(f"Keeping {config}; the project's instance settings are in {INSTANCE_CONFIG}")
        return
    config.unlink(missing_ok=True)
    config.symlink_to(INSTANCE_CONFIG)


def open_ui(env: Mapping[str, str]) -> int:
    """`dagster dev` (webserver and daemon) on the demo's instance, until Ctrl-C."""
    # Started in DAGSTER_HOME: from the repository root, `dagster dev` would warn that the
    # dagster.yaml it sees there is not used, though its link in DAGSTER_HOME is.
    command = [sys.executable, "-m", "dagster", "dev", "-w", str(WORKSPACE)]
    dagster_dev = subprocess.Popen(command, env=dict(env), cwd=env["DAGSTER_HOME"])
    try:
        return dagster_dev.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached `dagster dev` as well; give it time to stop its own processes.
        try:
            dagster_dev.wait(timeout=30)
        except subprocess.TimeoutExpired:
            dagster_dev.terminate()
            dagster_dev.wait(timeout=30)
        return 0


def materialize(env: Mapping[str, str], selection: str, *extra: str) -> None:
    """One `dagster asset materialize` call; its full output goes to a log file."""
    command = [
        sys.executable, "-m", "dagster", "asset", "materialize",
        "-m", "billwerk_dagster.definitions", "--select", selection, *extra,
    ]  # fmt: skip
    log_name = selection.replace("/", "_").replace(",", "+")
    log_path = DATA_DIR / "logs" / f"materialize-{log_name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"$ dagster asset materialize --select {selection} {' '.join(extra)}", flush=True)

    started = time.monotonic()
    with log_path.open("w") as log:
        done = subprocess.run(command, env=dict(env), cwd=PROJECT_ROOT, stdout=log, stderr=log)
    if done.returncode != 0:
        print(log_path.read_text()[-4000:], file=sys.stderr)
        raise SystemExit(f"materialization failed; the whole log is in {log_path}")
    print(f"  done in {time.monotonic() - started:.0f}s (log: {log_path})", flush=True)


def row_counts(settings: Settings) -> dict[str, int]:
    """Rows per table of the dataset, child tables included."""
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as db:
        tables = db.execute(
            "select table_name from information_schema.tables where table_schema = ? "
            "and table_name not like '\\_dlt%' escape '\\' order by table_name",
            [settings.dataset_name],
        ).fetchall()
        return {
            name: db.execute(f'select count(*) from "{settings.dataset_name}"."{name}"').fetchone()[
                0
            ]  # type: ignore[index]
            for (name,) in tables
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ui", action="store_true", help="open the Dagster UI instead")
    parser.add_argument("--days", type=int, default=DEMO_DAYS)
    parser.add_argument("--invoices", type=int, default=5000)
    args = parser.parse_args(argv)

    with running_sandbox(args.days, args.invoices) as url:
        env = demo_environment(url)
        if args.ui:
            print(f"Billwerk sandbox at {url}; Dagster UI at http://127.0.0.1:3000", flush=True)
            print(f"Dagster instance: {env['DAGSTER_HOME']} (Ctrl-C stops both)", flush=True)
            return open_ui(env)

        started = time.monotonic()
        last_day = DEMO_START + timedelta(days=args.days - 1)
        snapshots = ",".join(asset_key(e).to_user_string() for e in SNAPSHOT_ENDPOINTS)
        windowed = ",".join(asset_key(e).to_user_string() for e in WINDOWED_ENDPOINTS)
        materialize(env, snapshots)
        materialize(env, windowed, "--partition-range", f"{DEMO_START}...{last_day}")

    settings = Settings.from_env()
    print(f"\nLoaded into {settings.duckdb_path} in {time.monotonic() - started:.0f}s:\n")
    counts = row_counts(settings)
    width = max(map(len, counts))
    for name, count in counts.items():
        print(f"  {settings.dataset_name}.{name:<{width}}  {count:>8,}")
    print("\nOpen the Dagster UI on this result: make ui   (then http://127.0.0.1:3000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
