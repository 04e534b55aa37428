"""Access control per tenant: who may call, from where, for what; limits and timeouts."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from local_orthanc import OrthancHandle
from local_orthanc.server import free_port
from local_orthanc.synthetic import StudySpec, study_instances

from tests.helpers.tenants import StorageScp, run_tenants, tenant_config
from tests.production.support import DCMTK, associate, echo, find, move, rejection, store, study_query

REJECT_CALLING_AET = (0x01, 0x01, 0x03)
REJECT_CALLED_AET = (0x01, 0x01, 0x07)
REJECT_LIMIT = (0x02, 0x03, 0x02)
NOT_AUTHORIZED = 0x0124


def tenant(port: int, label: str, **extra: Any) -> dict[str, Any]:
    return {"AET": "ACL", "Port": port, "Labels": [label], **extra}


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def stored_study(orthanc: OrthancHandle, port: int, label: str) -> Iterator[StudySpec]:
    """A study stored through an open tenant, for the find and move checks."""
    spec = StudySpec(patient_name="Acl^Test")
    config = tenant_config(orthanc, [tenant(port, label)])
    with run_tenants(config):
        assoc = associate(port, "ACL")
        assert [store(assoc, ds) for ds in study_instances(spec)] == [0, 0]
        assoc.release()
    yield spec


def test_allowed_callers_by_aet(orthanc: OrthancHandle, port: int, label: str) -> None:
    config = tenant_config(orthanc, [tenant(port, label, AllowedCallers=["MODALITY"])])
    with run_tenants(config):
        assoc = associate(port, "ACL", "MODALITY")
        assert assoc.is_established
        assert echo(assoc) == 0
        assoc.release()
        assoc = associate(port, "ACL", "modality")  # StrictAetComparison false: case-insensitive
        assert assoc.is_established
        assoc.release()
        assert rejection(associate(port, "ACL", "INTRUDER")) == REJECT_CALLING_AET


def test_caller_bound_to_host(orthanc: OrthancHandle, port: int, label: str) -> None:
    """Same AET from another address (127.0.0.2 stands for another machine) is rejected."""
    callers = [{"AET": "MODALITY", "Hosts": ["127.0.0.1"]}, {"AET": "ROAMING"}]
    config = tenant_config(orthanc, [tenant(port, label, AllowedCallers=callers)])
    with run_tenants(config):
        here = associate(port, "ACL", "MODALITY", bind_address=("127.0.0.1", 0))
        assert here.is_established
        here.release()
        elsewhere = associate(port, "ACL", "MODALITY", bind_address=("127.0.0.2", 0))
        assert rejection(elsewhere) == REJECT_CALLING_AET
        roaming = associate(port, "ACL", "ROAMING", bind_address=("127.0.0.2", 0))
        assert roaming.is_established
        roaming.release()


def test_host_checked_on_every_request_with_global_rules(
    orthanc: OrthancHandle, port: int, label: str, stored_study: StudySpec
) -> None:
    """The plugin's corner case: Echo open to all lets anyone associate with a known AET,
    so the host of the modality must be checked again for each C-FIND."""
    config = tenant_config(
        orthanc,
        [tenant(port, label)],
        DicomModalities={"pacs": {"AET": "MODALITY", "Host": "127.0.0.1", "Port": 104}},
        DicomAlwaysAllowEcho=True,
        DicomCheckModalityHost=True,
    )
    with run_tenants(config):
        spoofed = associate(port, "ACL", "MODALITY", bind_address=("127.0.0.2", 0))
        assert spoofed.is_established
        assert echo(spoofed) == 0
        assert find(spoofed, study_query(stored_study.study_uid))[0] == NOT_AUTHORIZED
        spoofed.release()
        genuine = associate(port, "ACL", "MODALITY", bind_address=("127.0.0.1", 0))
        status, answers = find(genuine, study_query(stored_study.study_uid))
        assert (status, len(answers)) == (0, 1)
        genuine.release()


def test_called_aet_checked_when_configured(orthanc: OrthancHandle, port: int, label: str) -> None:
    config = tenant_config(orthanc, [tenant(port, label)], DicomCheckCalledAet=True)
    with run_tenants(config):
        assert rejection(associate(port, "SOMEONE_ELSE")) == REJECT_CALLED_AET
        assoc = associate(port, "ACL")
        assert assoc.is_established
        assoc.release()


def test_permissions_per_caller(
    orthanc: OrthancHandle, port: int, label: str, stored_study: StudySpec, move_destination: StorageScp
) -> None:
    callers = [{"AET": "VIEWER", "Permissions": ["Echo", "Find"]}, "MODALITY"]
    config = tenant_config(
        orthanc,
        [tenant(port, label, AllowedCallers=callers)],
        DicomModalities={"dest": ["DEST", "127.0.0.1", move_destination.port]},
    )
    with run_tenants(config):
        viewer = associate(port, "ACL", "VIEWER")
        assert echo(viewer) == 0
        status, answers = find(viewer, study_query(stored_study.study_uid))
        assert (status, len(answers)) == (0, 1)
        new_instance = next(study_instances(StudySpec()))
        assert store(viewer, new_instance) == NOT_AUTHORIZED
        status, completed = move(viewer, study_query(stored_study.study_uid), "DEST")
        assert status not in (0x0000, 0xFF00, -1) and completed == 0
        viewer.release()
        modality = associate(port, "ACL", "MODALITY")
        assert store(modality, new_instance) == 0
        assert move(modality, study_query(stored_study.study_uid), "DEST") == (0, 2)
        modality.release()


def test_move_destination_limited_to_the_tenants_modalities(
    orthanc: OrthancHandle, port: int, label: str, stored_study: StudySpec, move_destination: StorageScp
) -> None:
    config = tenant_config(
        orthanc,
        [tenant(port, label, AllowedMoveDestinations=["dest"])],
        DicomModalities={
            "dest": ["DEST", "127.0.0.1", move_destination.port],
            "elsewhere": ["ELSEWHERE", "127.0.0.1", move_destination.port],
        },
        DicomAlwaysAllowMove=True,
    )
    with run_tenants(config):
        assoc = associate(port, "ACL")
        query = study_query(stored_study.study_uid)
        assert move(assoc, query, "ELSEWHERE")[0] == 0xA801  # configured, but not for this tenant
        assert move(assoc, query, "NOBODY")[0] == 0xA801  # not a modality at all
        assert move(assoc, query, "DEST") == (0, 2)
        assoc.release()


def test_max_associations_per_tenant(orthanc: OrthancHandle, port: int, label: str) -> None:
    config = tenant_config(orthanc, [tenant(port, label, MaxAssociations=2)])
    with run_tenants(config):
        first, second = associate(port, "ACL", "ONE"), associate(port, "ACL", "TWO")
        assert first.is_established and second.is_established
        assert rejection(associate(port, "ACL", "THREE")) == REJECT_LIMIT
        first.release()
        time.sleep(0.2)
        third = associate(port, "ACL", "THREE")
        assert third.is_established
        third.release()
        second.release()


def test_max_associations_per_caller(orthanc: OrthancHandle, port: int, label: str) -> None:
    config = tenant_config(orthanc, [tenant(port, label, MaxAssociationsPerCaller=1)])
    with run_tenants(config):
        first = associate(port, "ACL", "GREEDY")
        assert first.is_established
        assert rejection(associate(port, "ACL", "GREEDY")) == REJECT_LIMIT
        other = associate(port, "ACL", "POLITE")
        assert other.is_established
        other.release()
        first.release()


def test_idle_association_closed_after_scp_timeout(orthanc: OrthancHandle, port: int, label: str) -> None:
    config = tenant_config(orthanc, [tenant(port, label)], DicomScpTimeout=2)
    with run_tenants(config):
        assoc = associate(port, "ACL")
        assert assoc.is_established
        start = time.monotonic()
        while assoc.is_established and time.monotonic() - start < 10:
            time.sleep(0.1)
        waited = time.monotonic() - start
        assert not assoc.is_established
        assert 1.5 < waited < 6, waited


def test_maximum_pdu_length_announced(orthanc: OrthancHandle, port: int, label: str) -> None:
    config = tenant_config(orthanc, [tenant(port, label)], MaximumPduLength=8192)
    with run_tenants(config):
        assoc = associate(port, "ACL")
        assert assoc.acceptor.maximum_length == 8192
        assoc.release()


def test_dcmtk_echoscu_with_a_wrong_calling_aet(orthanc: OrthancHandle, port: int, label: str) -> None:
    config = tenant_config(orthanc, [tenant(port, label, AllowedCallers=["MODALITY"])])
    with run_tenants(config):
        good = subprocess.run(
            [DCMTK["echoscu"], "-aet", "MODALITY", "-aec", "ACL", "127.0.0.1", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert good.returncode == 0, good.stderr
        bad = subprocess.run(
            [DCMTK["echoscu"], "-aet", "INTRUDER", "-aec", "ACL", "127.0.0.1", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert bad.returncode != 0
    output = bad.stdout + bad.stderr
    assert "Association Rejected" in output
    assert "Calling AE Title Not Recognized" in output


def test_connections_closed_before_the_request_free_their_slot(
    orthanc: OrthancHandle, port: int, label: str
) -> None:
    """TCP probes and port scans connect and close: each must not hold one of MaxAssociations
    until DicomScpTimeout (pynetdicom waits that long for an A-ASSOCIATE-RQ that cannot come)."""
    config = tenant_config(orthanc, [tenant(port, label, MaxAssociations=2)], DicomScpTimeout=60)
    with run_tenants(config) as servers:
        for _ in range(5):
            socket.create_connection(("127.0.0.1", port)).close()
        deadline = time.monotonic() + 5
        while servers.active_associations() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert servers.active_associations() == 0
        first, second = associate(port, "ACL", "ONE"), associate(port, "ACL", "TWO")
        assert first.is_established and second.is_established
        first.release()
        second.release()
