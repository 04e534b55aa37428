"""SIGTERM: stop accepting, let running associations finish within the grace period, exit 0.

A Kubernetes rolling update sends SIGTERM to the old pod while modalities are storing:
the C-STOREs under way must complete, and each acknowledged instance be in Orthanc with
the tenant's labels.
"""

from __future__ import annotations

import threading
import time

import requests
from local_orthanc import OrthancHandle
from local_orthanc.server import free_port
from local_orthanc.synthetic import StudySpec, study_instances

from tests.production.support import (
    associate,
    labelled_instances,
    process_config,
    server_process,
    store,
)

INSTANCES = 120
SIGNAL_AFTER = 15


def test_sigterm_lets_a_running_store_finish(orthanc: OrthancHandle, label: str) -> None:
    port = free_port()
    config = process_config(orthanc, [{"AET": "ROLLING", "Port": port, "Labels": [label]}])
    config["TenantServer"]["ShutdownGracePeriod"] = 60
    spec = StudySpec(instances_per_series=INSTANCES)
    acknowledged: list[str] = []
    statuses: list[int] = []
    halfway = threading.Event()
    released = threading.Event()

    def modality() -> None:
        assoc = associate(port, "ROLLING")
        for ds in study_instances(spec):
            statuses.append(store(assoc, ds))
            if statuses[-1] == 0:
                acknowledged.append(str(ds.SOPInstanceUID))
            if len(statuses) == SIGNAL_AFTER:
                halfway.set()
        assoc.release()
        released.set()

    with server_process(config) as server:
        client = threading.Thread(target=modality)
        client.start()
        assert halfway.wait(30)
        server.terminate()
        signalled = time.monotonic()

        refused_at = None
        while time.monotonic() - signalled < 5:
            late = associate(port, "ROLLING", "LATECOMER")
            if not late.is_established:
                refused_at = time.monotonic() - signalled
                break
            late.release()
            time.sleep(0.1)
        assert refused_at is not None, "still accepting associations 5 s after SIGTERM"
        assert not released.is_set(), "the store finished before the test could check the refusal"
        ready = requests.get(server.health_url + "/readyz", timeout=10)
        assert ready.status_code == 503

        client.join(60)
        assert server.wait(timeout=30) == 0
        stopped_after = time.monotonic() - signalled
        assert statuses == [0] * INSTANCES
        (stopped,) = server.events("stopped")
        assert stopped["aborted_associations"] == 0
        assert stopped_after < 60
        assert not server.alive()

    stored = labelled_instances(orthanc.url, (orthanc.username, orthanc.password), label)
    assert set(acknowledged) <= stored
    assert len(acknowledged) == INSTANCES == len(stored)


def test_grace_period_ends_with_an_abort_and_exit_0(orthanc: OrthancHandle, label: str) -> None:
    port = free_port()
    config = process_config(
        orthanc, [{"AET": "ROLLING", "Port": port, "Labels": [label]}], DicomScpTimeout=120
    )
    config["TenantServer"]["ShutdownGracePeriod"] = 2
    with server_process(config) as server:
        idle = associate(port, "ROLLING")
        assert idle.is_established
        server.terminate()
        signalled = time.monotonic()
        assert server.wait(timeout=15) == 0
        assert 1.5 < time.monotonic() - signalled < 6
        (stopped,) = server.events("stopped")
        assert stopped["aborted_associations"] == 1
        deadline = time.monotonic() + 5
        while idle.is_established and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not idle.is_established
