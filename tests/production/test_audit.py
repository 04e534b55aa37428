"""The audit log: one JSON line per association and per operation on stdout, security
events at WARNING, and no patient names (or other PHI beyond UIDs) anywhere in the output."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from local_orthanc import OrthancHandle
from local_orthanc.server import free_port
from local_orthanc.synthetic import StudySpec, study_instances
from pydicom.dataset import Dataset

from tests.helpers.tenants import StorageScp
from tests.production.support import (
    ServerProcess,
    associate,
    echo,
    find,
    move,
    process_config,
    rejection,
    server_process,
    store,
    study_query,
)

NAME = "Zyxwvutsrq^Quintessa"  # distinctive: any occurrence in the logs is a leak
# The malformed query is malformed on purpose: pydicom's warning about it (in this process,
# not the server's) is noise.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
PATIENT_ID = "PIDLEAK7731"
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(scope="module")
def traffic(
    orthanc: OrthancHandle, move_destination: StorageScp
) -> Iterator[tuple[ServerProcess, StudySpec]]:
    """One server process, and a session of everything the audit log must describe."""
    port = free_port()
    label = "audit_" + str(port)
    callers = ["MODALITY", {"AET": "VIEWER", "Permissions": ["Echo", "Find"]}]
    config = process_config(
        orthanc,
        [{"AET": "AUDIT", "Port": port, "Labels": [label], "AllowedCallers": callers}],
        DicomModalities={"dest": ["DEST", "127.0.0.1", move_destination.port]},
    )
    spec = StudySpec(patient_name=NAME, patient_id=PATIENT_ID, study_description=NAME)
    with server_process(config) as server:
        modality = associate(port, "AUDIT", "MODALITY")
        assert echo(modality) == 0
        assert [store(modality, ds) for ds in study_instances(spec)] == [0, 0]
        status, answers = find(modality, study_query(PatientName="Zyxwvut*", PatientID=""))
        assert (status, len(answers)) == (0, 1)
        assert find(modality, study_query(PatientID=PATIENT_ID))[0] == 0
        assert move(modality, study_query(spec.study_uid), "DEST") == (0, 2)
        # A malformed query that quotes the name back in its error.
        bad = Dataset()
        bad.QueryRetrieveLevel = NAME
        bad.PatientName = NAME
        assert find(modality, bad)[0] not in (0, 0xFF00, -1)
        modality.release()

        viewer = associate(port, "AUDIT", "VIEWER")
        assert store(viewer, next(study_instances(StudySpec(patient_name=NAME)))) == 0x0124
        assert move(viewer, study_query(spec.study_uid), "DEST") == (0xC514, 0)
        viewer.release()
        assert rejection(associate(port, "AUDIT", "INTRUDER")) == (1, 1, 3)
        server.wait_event("association-closed", count=2)
        yield server, spec


def only(lines: list[dict[str, Any]], event: str, **match: Any) -> list[dict[str, Any]]:
    return [
        line for line in lines if line["event"] == event and all(line.get(k) == v for k, v in match.items())
    ]


def test_every_line_is_json_with_the_common_fields(traffic: tuple[ServerProcess, StudySpec]) -> None:
    server, _ = traffic
    lines = server.lines()  # raises if a line is not JSON
    assert lines
    for line in lines:
        assert TS.match(line["ts"]), line
        assert line["level"] in ("INFO", "WARNING", "ERROR")
        assert line["event"]
    audit = [line for line in lines if line["logger"] == "tenant_server.audit"]
    for line in audit:
        assert line["tenant"] == "AUDIT"
        if line["event"] != "tls-handshake-failed":
            assert line["peer"] == "127.0.0.1"


def test_associations(traffic: tuple[ServerProcess, StudySpec]) -> None:
    server, _ = traffic
    lines = server.lines()
    opened = only(lines, "association-opened")
    assert [line["calling_aet"] for line in opened] == ["MODALITY", "VIEWER"]
    assert all(line["level"] == "INFO" for line in opened)
    closed = only(lines, "association-closed")
    assert sorted(line["calling_aet"] for line in closed) == ["MODALITY", "VIEWER"]
    assert all(line["end"] == "released" and line["duration_ms"] > 0 for line in closed)
    (rejected,) = only(lines, "association-rejected")
    assert rejected["level"] == "WARNING"
    assert (rejected["calling_aet"], rejected["reason"]) == ("INTRUDER", "0x01/0x01/0x03")


def test_operations(traffic: tuple[ServerProcess, StudySpec]) -> None:
    server, spec = traffic
    lines = server.lines()
    (echo,) = only(lines, "echo")
    assert (echo["calling_aet"], echo["status"]) == ("MODALITY", "0x0000")
    stores = only(lines, "store", calling_aet="MODALITY")
    assert len(stores) == 2
    for line in stores:
        assert line["status"] == "0x0000" and line["study_uid"] == spec.study_uid
        assert line["sop_instance_uid"] and line["series_uid"] and line["duration_ms"] >= 0
    finds = only(lines, "find", status="0x0000")
    assert [line["matches"] for line in finds] == [1, 1]
    assert finds[0]["query_level"] == "STUDY" and "(0010,0010)" in finds[0]["keys"]
    assert "values" not in finds[0] and "patient_id" not in stores[0]  # AuditQueryValues is off
    (moved,) = only(lines, "move")
    assert (moved["status"], moved["instances"], moved["destination"]) == ("0x0000", 2, "DEST")
    assert moved["uids"] == {"(0020,000D)": spec.study_uid}
    (failed,) = [line for line in only(lines, "find") if line["status"] != "0x0000"]
    assert failed["error"]


def test_security_events_at_warning(traffic: tuple[ServerProcess, StudySpec]) -> None:
    server, _ = traffic
    lines = server.lines()
    refused = only(lines, "operation-refused")
    assert [(line["level"], line["operation"], line["calling_aet"]) for line in refused] == [
        ("WARNING", "Store", "VIEWER"),
        ("WARNING", "Move", "VIEWER"),
    ]
    security = {line["event"] for line in lines if line["level"] == "WARNING"}
    assert security == {"association-rejected", "operation-refused"}


def test_refusals_are_not_logged_as_errors(traffic: tuple[ServerProcess, StudySpec]) -> None:
    """A refused C-MOVE is answered and audited; pynetdicom's generic handler-error lines and
    traceback for it would look like a bug in the server."""
    server, _ = traffic
    assert [line for line in server.lines() if line["level"] == "ERROR"] == []


def test_no_patient_name_or_id_or_password_in_the_output(
    traffic: tuple[ServerProcess, StudySpec], orthanc: OrthancHandle
) -> None:
    server, _ = traffic
    output = server.output()  # stdout and stderr: a container's log has both
    for secret in ("Zyxwvut", "Quintessa", PATIENT_ID, orthanc.password):
        assert secret.lower() not in output.lower(), secret


def test_query_values_and_patient_ids_only_when_asked(orthanc: OrthancHandle) -> None:
    """``TenantServer.AuditQueryValues`` puts the matching values (PHI) in find/move lines and the
    PatientID in store lines, for sites whose audit policy requires them; off by default (above)."""
    port = free_port()
    label = "audit_values_" + str(port)
    config = process_config(
        orthanc, [{"AET": "VALUES", "Port": port, "Labels": [label], "AllowedCallers": ["MODALITY"]}]
    )
    config["TenantServer"]["AuditQueryValues"] = True
    spec = StudySpec(patient_name=NAME, patient_id=PATIENT_ID + "V")
    with server_process(config) as server:
        assoc = associate(port, "VALUES", "MODALITY")
        assert store(assoc, next(study_instances(spec))) == 0
        assert find(assoc, study_query(PatientName="Zyxwvut*"))[0] == 0
        assoc.release()
        server.wait_event("association-closed")
        lines = server.lines()
    (stored,) = only(lines, "store")
    assert stored["patient_id"] == spec.patient_id
    (found,) = only(lines, "find")
    assert found["values"] == {"(0010,0010)": "Zyxwvut*"}
