"""Reading instance files ahead of the one being sent: order, errors, bounds, early stop."""

from __future__ import annotations

import threading
import time

import pytest

from tenant_server.read_ahead import read_ahead


def test_results_come_in_order_and_errors_stay_with_their_item() -> None:
    def read(n: int) -> int:
        time.sleep(0.01 * (n % 3))  # later items may finish first
        if n == 3:
            raise ValueError("unreadable")
        return n * 10

    outcomes = []
    for future in read_ahead(read, list(range(6))):
        try:
            outcomes.append(future.result())
        except ValueError:
            outcomes.append(-1)
    assert outcomes == [0, 10, 20, -1, 40, 50]


def test_reads_run_ahead_of_the_consumer_by_at_most_depth() -> None:
    started: list[int] = []
    lock = threading.Lock()

    def read(n: int) -> int:
        with lock:
            started.append(n)
        return n

    for consumed, future in enumerate(read_ahead(read, list(range(10)), depth=2), start=1):
        future.result()
        deadline = time.monotonic() + 5
        while len(started) < min(consumed + 1, 10) and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.02)  # time to run further ahead than it may, if it would
        with lock:
            assert min(consumed + 1, 10) <= len(started) <= min(consumed + 2, 10)
    assert started == list(range(10))


def test_stopping_early_drops_the_reads_not_started() -> None:
    started: list[int] = []

    def read(n: int) -> int:
        started.append(n)
        time.sleep(0.01)
        return n

    reads = read_ahead(read, list(range(50)), depth=2)
    assert next(reads).result() == 0
    reads.close()  # a cancelled C-MOVE
    assert len(started) <= 3
    assert not [t for t in threading.enumerate() if t.name.startswith("read-ahead")]


@pytest.mark.parametrize("count", [0, 1])
def test_short_lists(count: int) -> None:
    assert [f.result() for f in read_ahead(lambda n: n, list(range(count)))] == list(range(count))
