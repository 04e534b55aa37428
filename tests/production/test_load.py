"""Load: concurrent associations mixing C-FIND, C-STORE and C-MOVE against one tenant server
process, then an Orthanc outage in the middle of the load.

CI size: 10 associations for 20 s. ``MTDICOM_LONG=1``: 50 associations for 3 minutes
(figures in docs/operations.md). Every instance a client saw acknowledged must be in
Orthanc with the tenant's labels at the end, counted and compared.
"""

from __future__ import annotations

import copy
import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import requests
from local_orthanc import OrthancHandle
from local_orthanc.server import free_port
from local_orthanc.synthetic import StudySpec, make_instance, study_instances
from pydicom.uid import UID, generate_uid

from tenant_server.config import parse_settings
from tenant_server.orthanc import POOL_SIZE as ORTHANC_POOL_SIZE
from tenant_server.server import SupportedContexts, build_ae
from tests.helpers.tenants import StorageScp
from tests.production.support import (
    FaultProxy,
    ServerProcess,
    associate,
    cpu_seconds,
    ct_destination,
    echo,
    find,
    labelled_instances,
    long_or,
    move,
    process_config,
    server_process,
    store,
    study_query,
)

WORKERS = int(os.environ.get("MTDICOM_LOAD_WORKERS") or long_or(10, 50))
DURATION = float(os.environ.get("MTDICOM_LOAD_SECONDS") or long_or(20.0, 180.0))
REASSOCIATE_EVERY = 25  # operations per association before a worker releases and reconnects
RESULTS = os.environ.get("MTDICOM_LOAD_RESULTS")  # a file to write the figures to, if set


@dataclass
class Ledger:
    """What the clients did and saw, shared by the workers."""

    ops: Counter[str] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    acknowledged: set[str] = field(default_factory=set)
    timeline: list[tuple[float, float, str, int]] = field(default_factory=list)  # start, end, op, status
    associations: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, op: str, start: float, status: int, ok: bool, detail: str = "") -> None:
        with self.lock:
            self.ops[op] += 1
            self.timeline.append((start, time.monotonic(), op, status))
            if not ok:
                self.failures.append(f"{op}: 0x{status & 0xFFFF:04X} {detail}")


class Worker(threading.Thread):
    """One modality: an association at a time, a mix of operations, reconnecting now and then."""

    def __init__(
        self,
        number: int,
        port: int,
        ledger: Ledger,
        stop: threading.Event,
        seed_study: str,
        mix: tuple[tuple[str, float], ...],
        strict: bool = True,
    ) -> None:
        super().__init__(daemon=True, name=f"worker-{number}")
        self.port = port
        self.ledger = ledger
        self.stop = stop
        self.seed_study = seed_study
        self.rng = random.Random(number)
        self.mix = mix
        self.strict = strict
        self.aet = f"LOADER{number}"
        self.spec = StudySpec(patient_name=f"Load^{number}")
        self.series = generate_uid()
        self.stored = 0

    def run(self) -> None:
        while not self.stop.is_set():
            assoc = associate(self.port, "LOAD", self.aet)
            with self.ledger.lock:
                self.ledger.associations += 1
            if not assoc.is_established:
                self.ledger.record("associate", time.monotonic(), -1, False)
                time.sleep(0.2)
                continue
            for _ in range(REASSOCIATE_EVERY):
                if self.stop.is_set():
                    break
                if not assoc.is_established:  # aborted under the client: count it, reconnect
                    self.ledger.record("association", time.monotonic(), -1, False, "lost")
                    break
                self.one(assoc)
            if assoc.is_established:
                assoc.release()

    def one(self, assoc: Any) -> None:
        op = self.rng.choices([name for name, _ in self.mix], [weight for _, weight in self.mix])[0]
        start = time.monotonic()
        if op == "store":
            self.stored += 1
            ds = make_instance(self.spec, self.series, 1, self.stored)
            status = store(assoc, ds)
            if status == 0:
                with self.ledger.lock:
                    self.ledger.acknowledged.add(str(ds.SOPInstanceUID))
            self.ledger.record(op, start, status, status == 0 or not self.strict)
        elif op == "find":
            query = (
                study_query(self.spec.study_uid)
                if self.rng.random() < 0.5
                else study_query(PatientName="Load*")
            )
            status, _ = find(assoc, query)
            self.ledger.record(op, start, status, status == 0 or not self.strict)
        elif op == "move":
            status, completed = move(assoc, study_query(self.seed_study), "LOADDEST")
            ok = (status, completed) == (0, 3)
            self.ledger.record(op, start, status, ok or not self.strict, f"{completed} sub-operations")
        else:
            status = echo(assoc)
            detail = "" if status != -1 else f"aborted={assoc.is_aborted} established={assoc.is_established}"
            self.ledger.record(op, start, status, status == 0, detail)


class Sampler(threading.Thread):
    """The server process's threads, descriptors and memory, once a second."""

    def __init__(self, server: ServerProcess) -> None:
        super().__init__(daemon=True, name="sampler")
        self.server = server
        self.samples: list[dict[str, Any]] = []
        self.halt = threading.Event()
        self.start_time = time.monotonic()

    def run(self) -> None:
        while not self.halt.wait(1.0):
            self.samples.append({"t": round(time.monotonic() - self.start_time, 1), **self.server.stats()})


def settle(server: ServerProcess, baseline: dict[str, int], timeout: float = 20) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        stats = server.stats()
        if (stats["threads"] <= baseline["threads"] and stats["fds"] <= baseline["fds"]) or (
            time.monotonic() > deadline
        ):
            return stats
        time.sleep(0.25)


@pytest.fixture
def destination() -> Iterator[StorageScp]:
    with ct_destination("LOADDEST") as scp:
        yield scp


def load_config(
    orthanc: OrthancHandle, port: int, label: str, scp: StorageScp, url: str | None = None
) -> Any:
    return process_config(
        orthanc,
        [{"AET": "LOAD", "Port": port, "Labels": [label], "MaxAssociations": 2 * WORKERS + 16}],
        orthanc_url=url,
        DicomModalities={"dest": ["LOADDEST", "127.0.0.1", scp.port]},
        DicomAlwaysAllowFind=True,
        DicomAlwaysAllowMove=True,
    )


def seed(port: int) -> tuple[StudySpec, set[str]]:
    """A three-instance study the workers move again and again, and its SOP Instance UIDs."""
    spec = StudySpec(patient_name="Load^Seed", instances_per_series=3)
    instances = list(study_instances(spec))
    assoc = associate(port, "LOAD")
    assert [store(assoc, ds) for ds in instances] == [0, 0, 0]
    assoc.release()
    return spec, {str(ds.SOPInstanceUID) for ds in instances}


def run_workers(
    port: int,
    ledger: Ledger,
    seed_study: str,
    mix: tuple[tuple[str, float], ...],
    duration: float,
    strict: bool = True,
    during: Callable[[], None] | None = None,
) -> None:
    stop = threading.Event()
    workers = [Worker(n, port, ledger, stop, seed_study, mix, strict) for n in range(WORKERS)]
    for worker in workers:
        worker.start()
    if during is not None:
        during()
    else:
        time.sleep(duration)
    stop.set()
    for worker in workers:
        worker.join(60)
        assert not worker.is_alive(), f"{worker.name} is stuck"


@pytest.mark.timeout(long_or(300, 1800))
def test_mixed_load(orthanc: OrthancHandle, label: str, destination: StorageScp) -> None:
    port = free_port()
    with server_process(load_config(orthanc, port, label, destination)) as server:
        spec, seeded = seed(port)
        warm = associate(port, "LOAD")
        assert find(warm, study_query(spec.study_uid))[0] == 0
        warm.release()
        time.sleep(1)
        baseline = server.stats()
        sampler = Sampler(server)
        sampler.start()
        ledger = Ledger()
        mix = (("store", 0.45), ("find", 0.4), ("move", 0.15))
        orthanc_pid = getattr(getattr(orthanc, "_process", None), "pid", None)
        cpu_before = (
            cpu_seconds(server.pid),
            cpu_seconds(orthanc_pid) if orthanc_pid else 0.0,
            time.process_time(),
        )
        started = time.monotonic()
        run_workers(port, ledger, spec.study_uid, mix, DURATION)
        elapsed = time.monotonic() - started
        cpu = {
            "server": round(100 * (cpu_seconds(server.pid) - cpu_before[0]) / elapsed),
            "orthanc": round(100 * (cpu_seconds(orthanc_pid) - cpu_before[1]) / elapsed)
            if orthanc_pid
            else None,
            "clients": round(100 * (time.process_time() - cpu_before[2]) / elapsed),
        }
        after = settle(server, baseline)
        sampler.halt.set()
        sampler.join()
        metrics = requests.get(server.health_url + "/metrics", timeout=10).text
        assert server.alive()

    stored = labelled_instances(orthanc.url, (orthanc.username, orthanc.password), label)
    rss = [s["rss_kb"] for s in sampler.samples]
    third = rss[len(rss) // 3] if rss else baseline["rss_kb"]
    figures = {
        "workers": WORKERS,
        "seconds": round(elapsed, 1),
        "associations": ledger.associations,
        "operations": dict(ledger.ops),
        "operations_per_second": round(sum(ledger.ops.values()) / elapsed, 1),
        "failures": len(ledger.failures),
        "acknowledged_instances": len(ledger.acknowledged),
        "labelled_in_orthanc": len(stored - seeded),
        "moved_instances_received": len(destination.received),
        "before": baseline,
        "peak": {k: max(s[k] for s in sampler.samples) for k in ("threads", "fds", "rss_kb")},
        "after": after,
        "rss_kb_at_one_third": third,
        "rss_kb_every_tenth": [rss[len(rss) * i // 10] for i in range(10)] + rss[-1:] if rss else [],
        "cpu_percent": cpu,
        "cores": os.cpu_count(),
        "p50_ms": _percentiles(ledger, 0.5),
        "p95_ms": _percentiles(ledger, 0.95),
    }
    print("\nload:", json.dumps(figures, indent=1))
    if RESULTS:
        Path(RESULTS).write_text(json.dumps(figures, indent=1) + "\n")

    assert not ledger.failures, ledger.failures[:10]
    assert all(ledger.ops[op] > 0 for op in ("store", "find", "move"))
    assert ledger.acknowledged <= stored
    assert len(stored - seeded) == len(ledger.acknowledged)
    assert after["threads"] <= baseline["threads"], (baseline, after)
    assert after["fds"] <= baseline["fds"], (baseline, after)
    assert after["pooled"] <= ORTHANC_POOL_SIZE, after  # keep-alive connections, bounded
    assert after["wakeups"] <= 2 * ORTHANC_POOL_SIZE, after  # and their handles' eventfds
    # Flat memory: after the first third (caches warm), RSS grows by less than 25 MB or 25 %.
    assert rss[-1] - third < max(25_000, third // 4), rss
    assert 'tenant_operations_total{operation="Move",outcome="success",tenant="LOAD"}' in metrics


def _percentiles(ledger: Ledger, q: float) -> dict[str, float]:
    result = {}
    for op in ("store", "find", "move"):
        times = sorted(end - start for start, end, name, _ in ledger.timeline if name == op)
        if times:
            result[op] = round(1000 * times[min(len(times) - 1, int(q * len(times)))], 1)
    return result


@pytest.mark.timeout(long_or(300, 1800))
def test_orthanc_outage_during_load(orthanc: OrthancHandle, label: str, destination: StorageScp) -> None:
    """Orthanc goes away mid-load: clients get failure statuses (0xA700), nothing is acknowledged
    that is not stored and labelled, and everything works again once Orthanc is back."""
    parsed = urlparse(orthanc.url)
    with FaultProxy((parsed.hostname or "127.0.0.1", parsed.port or 80)) as proxy:
        port = free_port()
        with server_process(load_config(orthanc, port, label, destination, url=proxy.url)) as server:
            spec, _ = seed(port)
            ledger = Ledger()
            marks: dict[str, float] = {}
            ready: dict[str, int] = {}

            def outage() -> None:
                time.sleep(long_or(4, 20))
                proxy.down()
                marks["down"] = time.monotonic()
                time.sleep(long_or(5, 30))
                ready["down"] = requests.get(server.health_url + "/readyz", timeout=10).status_code
                marks["up"] = time.monotonic()
                proxy.up()
                time.sleep(long_or(7, 30))
                marks["end"] = time.monotonic()
                ready["up"] = requests.get(server.health_url + "/readyz", timeout=10).status_code

            mix = (("store", 0.5), ("find", 0.3), ("move", 0.1), ("echo", 0.1))
            run_workers(port, ledger, spec.study_uid, mix, 0, strict=False, during=outage)
            assert server.alive()

    stored = labelled_instances(orthanc.url, (orthanc.username, orthanc.password), label)
    during = [t for t in ledger.timeline if t[0] > marks["down"] + 0.2 and t[1] < marks["up"]]
    after = [t for t in ledger.timeline if t[0] > marks["up"] + 2.0]
    summary = {
        "during": Counter(f"{op} 0x{status & 0xFFFF:04X}" for _, _, op, status in during),
        "after": Counter(f"{op} 0x{status & 0xFFFF:04X}" for _, _, op, status in after),
        "acknowledged": len(ledger.acknowledged),
        "labelled_in_orthanc": len(stored),
        "readyz": ready,
    }
    print("\noutage:", summary, ledger.failures[:20])

    assert ready == {"down": 503, "up": 200}
    # While Orthanc is down: stores and queries fail with "out of resources", echo still works.
    assert {op for _, _, op, _ in during} >= {"store", "find"}
    for _, _, op, status in during:
        if op in ("store", "find"):
            assert status == 0xA700, (op, hex(status))
        elif op == "echo":
            assert status == 0
        else:
            assert status != 0, op
    # Full recovery.
    assert after and all(status == 0 for _, _, _, status in after), summary["after"]
    # Nothing acknowledged that is not in Orthanc with the tenant's labels.
    assert ledger.acknowledged <= stored
    assert len(ledger.acknowledged) > 0


def test_per_association_copy_of_the_contexts_is_cheap_and_independent(orthanc: OrthancHandle) -> None:
    """pynetdicom deep-copies the supported contexts for each association: ~170 ms of CPU
    with pydicom re-validating every UID. The copy keeps the UIDs and is a few ms."""
    settings = parse_settings(
        {
            "Orthanc": {"Url": orthanc.url},
            "MultitenantDicom": {"Servers": [{"AET": "X", "Port": 1, "Labels": ["x"]}]},
        },
        env={},
    )
    contexts = SupportedContexts(build_ae(settings.servers[0], settings).supported_contexts)
    start = time.perf_counter()
    copies = copy.deepcopy(contexts)
    assert time.perf_counter() - start < 0.05
    assert len(copies) == len(contexts) > 100
    copies[0].result = 0
    copies[0].transfer_syntax.append(UID("1.2.3"))
    assert contexts[0].result is None and "1.2.3" not in contexts[0].transfer_syntax
    assert copies[0].abstract_syntax == contexts[0].abstract_syntax
