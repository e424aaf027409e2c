"""Run the sandbox as its own process, until SIGTERM or SIGINT.

    python -m billwerk_dagster.sandbox --port 8765 --invoices 200000 --port-file /tmp/port

Prints the URL once serving. With `--port 0` the system picks a free port; `--port-file`
then tells other processes which one (written only once the server accepts requests).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path
from types import FrameType

from billwerk_dagster.sandbox.generate import generate
from billwerk_dagster.sandbox.server import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Sandbox


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m billwerk_dagster.sandbox", description="Serve a fake Billwerk API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--port-file", type=Path, help="write the port here once serving")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start", type=date.fromisoformat, default=date(2024, 1, 1))
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--contracts", type=int, default=400)
    parser.add_argument("--invoices", type=int, default=5000)
    parser.add_argument("--orders", type=int, default=600)
    parser.add_argument("--burst", type=int, default=700)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--token-ttl-s", type=float, default=3600)
    parser.add_argument("--client-id", default=DEFAULT_CLIENT_ID)
    parser.add_argument("--client-secret", default=DEFAULT_CLIENT_SECRET)
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def _write_port(path: Path, port: int) -> None:
    # Write then rename, so a process polling the file never reads half a number.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "w") as out:
        out.write(f"{port}\n")
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")

    started = time.perf_counter()
    data = generate(
        seed=args.seed,
        start=args.start,
        days=args.days,
        customers=args.customers,
        contracts=args.contracts,
        invoices=args.invoices,
        orders=args.orders,
        burst=args.burst,
    )
    logging.info("generated %s in %.1f s", data.counts(), time.perf_counter() - started)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    sandbox = Sandbox(
        data,
        client_id=args.client_id,
        client_secret=args.client_secret,
        host=args.host,
        port=args.port,
        latency_ms=args.latency_ms,
        token_ttl_s=args.token_ttl_s,
    )
    with sandbox:
        if args.port_file is not None:
            _write_port(args.port_file, sandbox.port)
        print(sandbox.url, flush=True)
        stop.wait()
    logging.info("sandbox stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
