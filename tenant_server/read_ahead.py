"""Instance files read from Orthanc while the previous one is being sent.

A C-MOVE or C-GET alternates two waits: ``GET /instances/{id}/file`` from Orthanc, then
the C-STORE sub-operation to the destination. Done one after the other they add up; on
a 50,000-study SQLite archive the read alone takes 13 ms (Orthanc 1.12.7), as long as
sending a small instance. One worker thread per retrieve reads up to ``DEPTH`` files ahead
of the one being sent, so the two overlap; no more than ``DEPTH + 1`` files are held at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

DEPTH = 2

Item = TypeVar("Item")
Result = TypeVar("Result")


def read_ahead(
    read: Callable[[Item], Result], items: Sequence[Item], depth: int = DEPTH
) -> Iterator[Future[Result]]:
    """Each item's read, in order, as a finished-or-running future (``result()`` raises what
    the read raised). Reads not yet started when the consumer stops are dropped."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="read-ahead")
    try:
        pending = [pool.submit(read, item) for item in items[:depth]]
        for index in range(len(items)):
            if index + depth < len(items):
                pending.append(pool.submit(read, items[index + depth]))
            yield pending.pop(0)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
