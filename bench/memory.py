"""Memory under volume: one tenant-server process serving 10 tenants stores many instances.

The process's resident set size (``VmRSS`` in ``/proc/PID/status``) is sampled while
client processes store through several associations at once; the target is a flat curve
below 150 MB, whatever the volume.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.clients import associate
from bench.synth import Factory

TENANTS = 10
INSTANCES_PER_STUDY = 10


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass
class RssSampler:
    pid: int
    interval: float = 0.25
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RssSampler:
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.samples.append((time.perf_counter() - self._t0, rss_bytes(self.pid)))
            except OSError:
                return
            self._stop.wait(self.interval)

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.samples


def _store_for_tenants(job: tuple[str, list[tuple[str, int, int]], int]) -> tuple[int, int]:
    """One client process: for each (AET, port, first study number), one association."""
    from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

    from bench.synth import as_dataset

    logging.getLogger("pynetdicom").setLevel(logging.ERROR)
    run, tenants, per_tenant = job
    factory = Factory(run)
    ok = failed = 0
    for aet, port, first in tenants:
        assoc = None
        try:
            for index in range(per_tenant):
                if assoc is None or not assoc.is_established:
                    # A dropped association (a timeout on a loaded machine) is counted, then reopened.
                    assoc = associate(aet, port, CTImageStorage)
                study = factory.study(INSTANCES_PER_STUDY, number=first + index // INSTANCES_PER_STUDY)
                try:
                    status = assoc.send_c_store(
                        as_dataset(factory.instance(study, index % INSTANCES_PER_STUDY))
                    )
                except RuntimeError:
                    status = None
                if status and int(status.Status) == 0:
                    ok += 1
                else:
                    failed += 1
        finally:
            if assoc is not None and assoc.is_established:
                assoc.release()
    return ok, failed


@dataclass
class MemoryRun:
    instances: int
    ok: int
    failed: int
    seconds: float
    start_rss: int
    peak_rss: int
    end_rss: int
    samples: list[tuple[float, int]]


def store_and_sample(
    pid: int, tenants: list[tuple[str, int]], instances: int, clients: int, run: str
) -> MemoryRun:
    per_tenant = max(1, instances // len(tenants))
    jobs: list[tuple[str, list[tuple[str, int, int]], int]] = []
    for worker in range(clients):
        mine = [
            (aet, port, 100_000 + index * 10_000)
            for index, (aet, port) in enumerate(tenants)
            if index % clients == worker
        ]
        jobs.append((run, mine, per_tenant))
    sampler = RssSampler(pid)
    start_rss = rss_bytes(pid)
    sampler.start()
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(clients, mp_context=context) as pool:
        results = list(pool.map(_store_for_tenants, jobs))
    seconds = time.perf_counter() - start
    time.sleep(1.0)
    samples = sampler.stop()
    end_rss = rss_bytes(pid)
    return MemoryRun(
        instances=per_tenant * len(tenants),
        ok=sum(r[0] for r in results),
        failed=sum(r[1] for r in results),
        seconds=seconds,
        start_rss=start_rss,
        peak_rss=max([start_rss, end_rss, *(s[1] for s in samples)]),
        end_rss=end_rss,
        samples=samples,
    )
