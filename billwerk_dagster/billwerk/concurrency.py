"""Threads for one sync: a request rate shared by all of them, and page streams read at once.

Billwerk pages with the `from` cursor, so each page's request needs the previous page: one
pager is sequential by nature. A long window is therefore cut into sub-windows, each with
a pager of its own, and `interleave` reads those pagers side by side. dlt's own tools do not
fit here: a parallelized resource or `defer` runs whole items or whole resources in threads,
but cannot fan one resource out into independent cursors while it stays one resource, and
so one Dagster asset.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from typing import TypeVar

T = TypeVar("T")

# The server counts requests per second by its own clock, on arrival. Spacing requests 2%
# wider than 1/rate leaves 20 ms for the jitter between our clock and its count, so that
# rate + 1 requests never land within one of its seconds.
SPACING_MARGIN = 0.02


class RateLimiter:
    """Lets requests start at most `per_second` times a second, across all threads.

    Starts are spaced evenly, `1 / per_second` apart plus the margin. The thread next in
    line sleeps until its start while it holds the lock; the others wait on the lock, so no
    thread ever spins.
    """

    def __init__(self, per_second: float) -> None:
        if not per_second > 0:
            raise ValueError(f"a rate limit must be above 0 per second, got {per_second}")
        self.interval = (1 + SPACING_MARGIN) / per_second
        self._lock = threading.Lock()
        self._next_start = float("-inf")

    def wait(self) -> None:
        """Block until this thread may send its request."""
        with self._lock:
            delay = self._next_start - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            # Counted from the real start, so a late wake-up never squeezes the next gap.
            self._next_start = time.monotonic() + self.interval


class _Finished:
    """Put in the hand-off queue by a thread as its last item."""


def interleave(
    streams: Sequence[Callable[[], Generator[T, None, None]]], *, buffer: int, name: str
) -> Iterator[T]:
    """Read every stream in a thread of its own; yield their items as they arrive.

    At most `buffer` items wait between the threads and the caller (plus the one each
    thread holds), so memory does not grow with the data. The first error of any stream
    stops the others and is raised here at once. Closing this generator stops them too.
    A thread stops before asking its stream for the next item, and this generator returns
    or raises only once every thread has ended: none outlives the iteration it feeds.
    """
    handoff: queue.Queue[T | _Finished] = queue.Queue(maxsize=buffer)
    stop = threading.Event()
    errors: list[Exception] = []

    def read(stream: Callable[[], Generator[T, None, None]]) -> None:
        try:
            if not stop.is_set():
                with closing(stream()) as items:
                    for item in items:
                        handoff.put(item)
                        if stop.is_set():
                            break
        except Exception as e:
            errors.append(e)
            stop.set()
        finally:
            handoff.put(_Finished())

    with ThreadPoolExecutor(max_workers=len(streams), thread_name_prefix=name) as pool:
        for stream in streams:
            pool.submit(read, stream)
        running = len(streams)
        try:
            while running and not errors:
                item = handoff.get()
                if isinstance(item, _Finished):
                    running -= 1
                elif not errors:
                    yield item
            if errors:
                raise errors[0]
        finally:
            # Taking what is left unblocks threads waiting to put; each then sees `stop`.
            # TODO: a thread inside a request waits out its retries' backoff (up to minutes)
            # before it sees `stop`; a stop-aware sleep in the retrying session would end that.
            stop.set()
            while running:
                if isinstance(handoff.get(), _Finished):
                    running -= 1
