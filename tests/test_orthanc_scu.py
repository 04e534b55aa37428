"""Orthanc's own DICOM client (its DCMTK SCU, driven over REST) against our tenant server.

A PACS administrator will register a tenant endpoint as a modality of another Orthanc and
query, retrieve and send through it; this checks that client sees what pynetdicom and
dcmtk see: the tenant's data only, counts within the view, IMAGE-level answers, Pending
C-MOVE responses it accepts, and C-STORE responses with the right status.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from local_orthanc.synthetic import StudySpec, study_instances
from pydicom.dataset import Dataset

from tenant_server.audit import AUDIT_LOGGER
from tests.helpers.dicom import ids_of, store
from tests.helpers.orthanc import OrthancRest
from tests.helpers.tenants import StorageScp


@pytest.fixture(scope="module")
def tenant_a(ours: dict[str, int], rest: OrthancRest) -> Iterator[str]:
    """Our OURS_A registered in Orthanc as a modality: the name Orthanc's REST API knows it by."""
    name = "tenant-a-" + secrets.token_hex(3)
    entry = {"AET": "OURS_A", "Host": "127.0.0.1", "Port": ours["OURS_A"]}
    rest.session.put(f"{rest.url}/modalities/{name}", json=entry, timeout=10).raise_for_status()
    yield name
    rest.session.delete(f"{rest.url}/modalities/{name}", timeout=10)


@pytest.fixture(scope="module")
def stored(ours: dict[str, int]) -> dict[str, list[Dataset]]:
    """One two-instance study stored through each tenant: its instances."""
    specs = {"a": StudySpec(modality="MR"), "b": StudySpec()}
    instances = {tenant: list(study_instances(spec)) for tenant, spec in specs.items()}
    for tenant, datasets in instances.items():
        aet = f"OURS_{tenant.upper()}"
        assert [r.Status for r in store(ours[aet], aet, datasets)] == [0, 0]
    return instances


@pytest.fixture(scope="module")
def studies(stored: dict[str, list[Dataset]]) -> dict[str, StudySpec]:
    return {
        tenant: StudySpec(
            patient_id=str(ds[0].PatientID),
            study_uid=str(ds[0].StudyInstanceUID),
            series_uids=[str(ds[0].SeriesInstanceUID)],
        )
        for tenant, ds in stored.items()
    }


def query(rest: OrthancRest, modality: str, level: str, keys: dict[str, str]) -> list[dict[str, Any]]:
    found = rest.post(f"/modalities/{modality}/query", {"Level": level, "Query": keys})
    answers: list[dict[str, Any]] = rest.get(f"/queries/{found['ID']}/answers?expand&simplify")
    return answers


def test_echo(tenant_a: str, rest: OrthancRest) -> None:
    assert rest.session.post(f"{rest.url}/modalities/{tenant_a}/echo", json={}, timeout=30).status_code == 200


def test_study_query_answers_in_the_tenants_view(
    tenant_a: str, rest: OrthancRest, studies: dict[str, StudySpec]
) -> None:
    own, other = studies["a"], studies["b"]
    keys = {"StudyInstanceUID": own.study_uid, "NumberOfStudyRelatedInstances": "", "ModalitiesInStudy": ""}
    (answer,) = query(rest, tenant_a, "Study", keys)
    assert answer["StudyInstanceUID"] == own.study_uid
    assert answer["NumberOfStudyRelatedInstances"] == "2"
    assert answer["ModalitiesInStudy"] == "MR"
    assert query(rest, tenant_a, "Study", {"StudyInstanceUID": other.study_uid}) == []
    assert query(rest, tenant_a, "Patient", {"PatientID": other.patient_id}) == []


def test_image_level_query(tenant_a: str, rest: OrthancRest, studies: dict[str, StudySpec]) -> None:
    """What the official plugin refuses (0xC000): Orthanc's own client asks it the standard way."""
    own = studies["a"]
    keys = {"StudyInstanceUID": own.study_uid, "SeriesInstanceUID": own.series_uids[0], "SOPInstanceUID": ""}
    answers = query(rest, tenant_a, "Instance", keys)
    assert len(answers) == 2 and all(a["SeriesInstanceUID"] == own.series_uids[0] for a in answers)


def test_move_through_orthancs_scu(
    tenant_a: str, rest: OrthancRest, studies: dict[str, StudySpec], move_destination: StorageScp
) -> None:
    own, other = studies["a"], studies["b"]
    move_destination.clear()
    body = {"Level": "Study", "Resources": [{"StudyInstanceUID": own.study_uid}], "TargetAet": "DEST"}
    rest.post(f"/modalities/{tenant_a}/move", body)
    assert len(move_destination.sop_uids()) == 2
    move_destination.clear()
    body["Resources"] = [{"StudyInstanceUID": other.study_uid}]
    rest.post(f"/modalities/{tenant_a}/move", body)  # another tenant's study: nothing to send
    assert move_destination.sop_uids() == set()


def test_store_through_orthancs_scu(
    tenant_a: str, rest: OrthancRest, stored: dict[str, list[Dataset]]
) -> None:
    """Orthanc sending an instance to the tenant: its own is acknowledged, another tenant's refused."""
    datasets = {tenant: instances[0] for tenant, instances in stored.items()}
    ids = {tenant: ids_of(ds)["Instance"] for tenant, ds in datasets.items()}
    sent = rest.session.post(
        f"{rest.url}/modalities/{tenant_a}/store",
        json={"Resources": [ids["a"]], "Synchronous": True},
        timeout=60,
    )
    assert sent.status_code == 200, sent.text
    assert sent.json()["FailedInstancesCount"] == 0
    labels_before = rest.labels("Study", ids_of(datasets["b"])["Study"])
    refused = rest.session.post(
        f"{rest.url}/modalities/{tenant_a}/store",
        json={"Resources": [ids["b"]], "Synchronous": True},
        timeout=60,
    )
    assert refused.status_code == 500 and "status 0x0124" in refused.json()["Details"], refused.text
    assert rest.labels("Study", ids_of(datasets["b"])["Study"]) == labels_before == ["compat_b"]


def test_get_through_orthancs_scu(
    tenant_a: str, rest: OrthancRest, studies: dict[str, StudySpec], caplog: pytest.LogCaptureFixture
) -> None:
    """Orthanc 1.12.7's C-GET SCU: the study comes back on its association, another tenant's does not."""
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    for tenant, expected in (("a", 2), ("b", 0)):
        body = {"Level": "Study", "Resources": [{"StudyInstanceUID": studies[tenant].study_uid}]}
        reply = rest.session.post(f"{rest.url}/modalities/{tenant_a}/get", json=body, timeout=60)
        assert reply.status_code == 200, reply.text
        (line,) = [r.fields for r in caplog.records if r.getMessage() == "get"]  # type: ignore[attr-defined]
        assert (line["calling_aet"], line["instances"], line["status"]) == ("ORTHANC", expected, "0x0000")
        caplog.clear()
