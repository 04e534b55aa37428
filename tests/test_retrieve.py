"""C-MOVE and C-GET through our tenant servers: resolution in the view, real sub-operations."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import pytest
from local_orthanc import OrthancHandle, dcmtk
from local_orthanc.server import free_port
from local_orthanc.synthetic import StudySpec, make_instance, to_bytes
from prometheus_client import generate_latest
from pydicom.uid import generate_uid

from tenant_server.audit import AUDIT_LOGGER
from tests.helpers.archive import Archive, load_archive
from tests.helpers.dicom import get, identifier, move
from tests.helpers.orthanc import OrthancRest
from tests.helpers.tenants import StorageScp, run_tenants, storage_scp, tenant_config


@pytest.fixture(scope="module")
def archive(rest: OrthancRest) -> Archive:
    return load_archive(rest)


@pytest.fixture
def dest(move_destination: StorageScp) -> StorageScp:
    move_destination.clear()
    return move_destination


def test_study_move_reports_each_instance_and_uses_the_destinations_aet(
    ours: dict[str, int], archive: Archive, dest: StorageScp
) -> None:
    responses = move(
        ours["OURS_A"],
        "OURS_A",
        identifier("STUDY", StudyInstanceUID=archive.a_shared.spec.study_uid),
        "DEST",
    )
    pending = [r for r in responses if r.Status == 0xFF00]
    assert len(pending) == 4
    assert [r.NumberOfRemainingSuboperations for r in pending] == [3, 2, 1, 0]
    final = responses[-1]
    assert (
        final.Status == 0x0000
        and final.NumberOfCompletedSuboperations == 4
        and final.NumberOfFailedSuboperations == 0
    )
    assert dest.sop_uids() == set(archive.a_shared.sop_uids)
    assert set(dest.called_aets) == {"DEST"}  # the plugin overrides this with the tenant's AET
    assert set(dest.calling_aets) == {"OURS_A"}


def test_patient_move_sends_only_this_tenants_studies(
    ours: dict[str, int], archive: Archive, dest: StorageScp
) -> None:
    move(ours["OURS_A"], "OURS_A", identifier("PATIENT", PatientID=archive.shared_patient), "DEST", "P")
    assert dest.sop_uids() == set(archive.a_shared.sop_uids)  # not B's, not the unlabelled study


def test_other_tenants_study_moves_nothing(
    ours: dict[str, int], archive: Archive, dest: StorageScp, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    responses = move(
        ours["OURS_B"],
        "OURS_B",
        identifier("STUDY", StudyInstanceUID=archive.a_shared.spec.study_uid),
        "DEST",
    )
    assert responses[-1].Status == 0x0000 and responses[-1].NumberOfCompletedSuboperations == 0
    assert dest.sop_uids() == set()
    # The attempt is audited although pynetdicom answers a count of 0 without the handler.
    (line,) = [r.fields for r in caplog.records if r.getMessage() == "move"]  # type: ignore[attr-defined]
    assert (line["instances"], line["destination"], line["status"]) == (0, "DEST", "0x0000")


def test_the_audit_line_tells_how_a_move_ended(
    orthanc: OrthancHandle, archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    """pynetdicom composes the final status (some or all sub-operations failed, destination
    unreachable); the audit line carries that status and the counts, not a blanket success."""
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    with storage_scp("FULL") as full:
        full.status = 0xA700
        port = free_port()
        modalities = {
            "full": {"AET": "FULL", "Host": "127.0.0.1", "Port": full.port},
            "gone": {"AET": "GONE", "Host": "127.0.0.1", "Port": free_port()},
        }
        config = tenant_config(
            orthanc,
            [{"AET": "MOVER", "Port": port, "Labels": ["compat_a"]}],
            DicomModalities=modalities,
            DicomAlwaysAllowMove=True,
        )
        study = identifier("STUDY", StudyInstanceUID=archive.a_shared.spec.study_uid)
        with run_tenants(config) as servers:
            assert move(port, "MOVER", study, "FULL")[-1].Status == 0xA702
            assert move(port, "MOVER", study, "GONE")[-1].Status == 0xA801
            metrics = generate_latest(servers.telemetry.registry).decode()
    lines = [r.fields for r in caplog.records if r.getMessage() == "move"]  # type: ignore[attr-defined]
    instances = len(archive.a_shared.sop_uids)
    assert [(line["destination"], line["status"], line.get("failed")) for line in lines] == [
        ("FULL", "0xA702", instances),
        ("GONE", "0xA801", None),
    ]
    assert lines[0]["completed"] == 0 and lines[0]["instances"] == instances
    failed = 'tenant_retrieve_suboperations_total{operation="Move",result="failed",tenant="MOVER"}'
    assert f"{failed} {float(instances)}" in metrics


def test_series_list_and_image_level(ours: dict[str, int], archive: Archive, dest: StorageScp) -> None:
    study = archive.a_shared
    move(
        ours["OURS_A"],
        "OURS_A",
        identifier(
            "SERIES", StudyInstanceUID=study.spec.study_uid, SeriesInstanceUID="\\".join(study.series_uids)
        ),
        "DEST",
    )
    assert dest.sop_uids() == set(study.sop_uids)
    dest.clear()
    move(
        ours["OURS_A"],
        "OURS_A",
        identifier(
            "IMAGE",
            StudyInstanceUID=study.spec.study_uid,
            SeriesInstanceUID=study.series_uids[0],
            SOPInstanceUID=study.sop_uids[0],
        ),
        "DEST",
    )
    assert dest.sop_uids() == {study.sop_uids[0]}


def test_unknown_destination_is_a801(ours: dict[str, int], archive: Archive) -> None:
    responses = move(
        ours["OURS_A"],
        "OURS_A",
        identifier("STUDY", StudyInstanceUID=archive.a_shared.spec.study_uid),
        "NOWHERE",
    )
    assert [r.Status for r in responses] == [0xA801]


def test_wildcards_cannot_retrieve_everything(ours: dict[str, int], dest: StorageScp) -> None:
    responses = move(ours["OURS_A"], "OURS_A", identifier("PATIENT", PatientID="*"), "DEST", "P")
    assert responses[-1].Status >= 0xA000 and dest.sop_uids() == set()


def test_a_planted_foreign_series_is_not_sent_with_the_study(
    ours: dict[str, int], rest: OrthancRest, dest: StorageScp
) -> None:
    """Children carrying another tenant's labels stay out; unlabelled children follow the study."""
    spec = StudySpec()
    own = [make_instance(spec, generate_uid(), 1, i) for i in (1, 2)]
    for ds in own:
        rest.store_with_labels(to_bytes(ds), ["compat_a"])
    foreign = make_instance(spec, generate_uid(), 2, 1)
    ids = rest.store_with_labels(to_bytes(foreign), ["compat_b"], ("Series", "Instance"))
    assert rest.labels("Study", ids["Study"]) == ["compat_a"]
    bare = make_instance(spec, generate_uid(), 3, 1)
    rest.upload(to_bytes(bare))
    responses = move(ours["OURS_A"], "OURS_A", identifier("STUDY", StudyInstanceUID=spec.study_uid), "DEST")
    assert responses[-1].NumberOfCompletedSuboperations == 3
    assert dest.sop_uids() == {
        str(own[0].SOPInstanceUID),
        str(own[1].SOPInstanceUID),
        str(bare.SOPInstanceUID),
    }


def test_c_get_sends_back_on_the_same_association(ours: dict[str, int], archive: Archive) -> None:
    responses, received = get(
        ours["OURS_A"], "OURS_A", identifier("STUDY", StudyInstanceUID=archive.a_other.spec.study_uid)
    )
    assert responses[-1].Status == 0x0000 and responses[-1].NumberOfCompletedSuboperations == 3
    assert {str(ds.SOPInstanceUID) for ds in received} == set(archive.a_other.sop_uids)
    _, nothing = get(
        ours["OURS_B"], "OURS_B", identifier("STUDY", StudyInstanceUID=archive.a_other.spec.study_uid)
    )
    assert nothing == []


def test_dcmtk_movescu_and_getscu(
    ours: dict[str, int], archive: Archive, dest: StorageScp, tmp_path: Path
) -> None:
    study = archive.a_other
    keys = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study.spec.study_uid}"]
    moved = subprocess.run(
        [
            dcmtk.tool("movescu"),
            "-S",
            "-aec",
            "OURS_A",
            "-aem",
            "DEST",
            *keys,
            "127.0.0.1",
            str(ours["OURS_A"]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert moved.returncode == 0, moved.stderr
    assert dest.sop_uids() == set(study.sop_uids)
    got = subprocess.run(
        [
            dcmtk.tool("getscu"),
            "-S",
            "-aec",
            "OURS_A",
            "-od",
            str(tmp_path),
            *keys,
            "127.0.0.1",
            str(ours["OURS_A"]),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert got.returncode == 0, got.stderr
    assert len(list(tmp_path.iterdir())) == 3


@pytest.mark.plugin
def test_plugin_reports_a_single_sub_operation(
    plugin_ports: dict[str, int], archive: Archive, dest: StorageScp, rest: OrthancRest
) -> None:
    """Documents the plugin's behaviour our server improves on (one final response, no pendings)."""
    unknown = move(
        plugin_ports["PLUGIN_A"],
        "PLUGIN_A",
        identifier("STUDY", StudyInstanceUID=archive.a_shared.spec.study_uid),
        "NOWHERE",
    )
    assert [r.Status for r in unknown] == [0xC000]  # not the standard 0xA801
    # The plugin reads DicomModalities live over REST, so the destination is registered there.
    rest.session.put(
        f"{rest.url}/modalities/dest", json={"AET": "DEST", "Host": "127.0.0.1", "Port": dest.port}
    ).raise_for_status()
    responses = move(
        plugin_ports["PLUGIN_A"],
        "PLUGIN_A",
        identifier("STUDY", StudyInstanceUID=archive.a_shared.spec.study_uid),
        "DEST",
    )
    assert [r.Status for r in responses] == [0x0000]
    assert responses[0].NumberOfCompletedSuboperations == 1
    assert dest.sop_uids() == set(archive.a_shared.sop_uids)
    assert set(dest.called_aets) == {"PLUGIN_A"}  # the plugin's CalledAet override bug
