"""Scale check: 100 servers in one resource, and 100 resources, against the emulated API server.

The durations are printed (and recorded in docs/kubernetes.md), never asserted: a loaded CI
machine must not turn a timing into a failure. What is asserted is that everything is
reconciled, without a single error. The operator runs as its own process (the image's
``kopf run`` command line); the emulator (one Python thread) is the slowest party here.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from mtdicom_operator.crd import KIND

from tests.operator.conftest import condition, new_resource, operator_errors, operator_process
from tests.operator.emulator import Emulator, wait_for
from tests.operator.samples import many_servers_spec

NS = "pacs"
COUNT = 100


def report(capsys: pytest.CaptureFixture[str], text: str) -> None:
    with capsys.disabled():
        print(f"\n[scale] {text}")


def reconciled(emu: Emulator, name: str) -> bool:
    resource = emu.get(KIND, NS, name)
    if resource is None:
        return False
    status = resource.get("status") or {}
    return bool(
        status.get("observedGeneration") == resource["metadata"]["generation"] and status.get("conditions")
    )


def all_ready(emu: Emulator) -> bool:
    emu.finish_rollouts(NS)
    resources = emu.items(KIND, NS)
    return all(condition(r, "Ready").get("status") == "True" for r in resources)


@pytest.fixture(autouse=True)
def production_status_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """100 status daemons polling every 0.3 s would measure the test setup, not the operator."""
    monkeypatch.setenv("MTDICOM_STATUS_INTERVAL", "2")


def test_one_resource_with_100_servers(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = emulator
    log = tmp_path / "operator.log"
    with operator_process(log):
        wait_for(lambda: "Operator configured" in log.read_text(), what="operator started")
        start = time.monotonic()
        emu.create(KIND, NS, new_resource(name="big", spec=many_servers_spec(COUNT)))
        wait_for(
            lambda: len(emu.names("Service", NS)) == COUNT, timeout=120, interval=0.2, what="300 children"
        )
        wait_for(lambda: reconciled(emu, "big"), timeout=60, interval=0.2, what="status")
        reconcile_seconds = time.monotonic() - start
        wait_for(lambda: all_ready(emu), timeout=120, interval=0.5, what="Ready")
        ready_seconds = time.monotonic() - start
        status = emu.must_get(KIND, NS, "big")["status"]
        assert status["readyServers"] == f"{COUNT}/{COUNT}"
        assert len(emu.names("ConfigMap", NS)) == len(emu.names("Deployment", NS)) == COUNT
    assert operator_errors(log) == []
    report(
        capsys,
        f"1 resource x {COUNT} servers: {3 * COUNT} children created and status written in "
        f"{reconcile_seconds:.1f} s; Ready=True {ready_seconds:.1f} s after creation",
    )


def test_100_resources(emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emu = emulator
    names = [f"tenant-{i:03d}" for i in range(COUNT)]
    log = tmp_path / "operator.log"
    with operator_process(log):
        wait_for(lambda: "Operator configured" in log.read_text(), what="operator started")
        start = time.monotonic()
        for i, name in enumerate(names):
            spec = many_servers_spec(1, first_port=20000 + i)
            emu.create(KIND, NS, new_resource(name=name, spec=spec))
        created_seconds = time.monotonic() - start
        wait_for(lambda: len(emu.names("Service", NS)) == COUNT, timeout=120, interval=0.2, what="children")
        wait_for(lambda: all(reconciled(emu, n) for n in names), timeout=120, interval=0.5, what="statuses")
        reconcile_seconds = time.monotonic() - start
        requests = len(emu.recorded())
    assert operator_errors(log) == []
    report(
        capsys,
        f"{requests} API requests in all; {COUNT} resources x 1 server: created by the test in {created_seconds:.1f} s, all {3 * COUNT} "
        f"children and statuses in {reconcile_seconds:.1f} s",
    )
