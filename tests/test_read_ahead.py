"""Reading instance files ahead of the one being sent: order, errors, memory bound, early stop."""

from __future__ import annotations

import threading
import time

import pytest

from tenant_server.read_ahead import read_ahead


class Reads:
    """A fake file source that records when each read starts (the files are made up here;
    what is under test is the scheduling, not Orthanc)."""

    def __init__(self, sizes: list[int], fail: int | None = None) -> None:
        self.sizes = sizes
        self.fail = fail
        self.started: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, index: int) -> bytes:
        with self.lock:
            self.started.append(index)
        time.sleep(0.01)
        if index == self.fail:
            raise ValueError("unreadable")
        return bytes(self.sizes[index])

    def count(self) -> int:
        with self.lock:
            return len(self.started)


def settle() -> None:
    time.sleep(0.05)  # time for the worker to start a read it would start


def test_results_come_in_order_and_errors_stay_with_their_item() -> None:
    reads = Reads([10, 20, 30, 40, 50], fail=3)
    outcomes = []
    for future in read_ahead(reads, list(range(5)), small=1000):
        try:
            outcomes.append(len(future.result()))
        except ValueError:
            outcomes.append(-1)
    assert outcomes == [10, 20, 30, -1, 50]


def test_after_a_small_file_the_next_one_is_read_while_it_is_sent() -> None:
    reads = Reads([10] * 4)
    for consumed, future in enumerate(read_ahead(reads, list(range(4)), small=1000), start=1):
        future.result()
        settle()  # "sending" the current file
        assert reads.count() == min(consumed + 1, 4)  # the next one, and only that one


def test_after_a_large_file_nothing_is_read_until_it_is_sent() -> None:
    """Two large files are never held at once."""
    reads = Reads([5000, 10, 5000, 10])
    seen_while_sending = []
    for future in read_ahead(reads, list(range(4)), small=1000):
        future.result()
        settle()
        seen_while_sending.append(reads.count())
    assert seen_while_sending == [1, 3, 3, 4]
    assert reads.started == [0, 1, 2, 3]


def test_stopping_early_drops_the_reads_not_started() -> None:
    reads = Reads([10] * 50)
    stream = read_ahead(reads, list(range(50)), small=1000)
    assert len(next(stream).result()) == 10
    stream.close()  # a cancelled C-MOVE
    assert reads.count() <= 2
    assert not [t for t in threading.enumerate() if t.name.startswith("read-ahead")]


@pytest.mark.parametrize("count", [0, 1])
def test_short_lists(count: int) -> None:
    reads = Reads([7] * count)
    assert [len(f.result()) for f in read_ahead(reads, list(range(count)))] == [7] * count
