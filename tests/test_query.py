"""C-FIND through our tenant servers, level by level, and side by side with the official plugin."""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest
from local_orthanc import OrthancHandle, dcmtk
from local_orthanc.server import free_port
from local_orthanc.synthetic import StudySpec, make_instance, to_bytes
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.association import Association
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # type: ignore[attr-defined]

from tests.helpers.archive import Archive, load_archive
from tests.helpers.dicom import find, identifier, requesting_ae, values
from tests.helpers.faults import fault_proxy
from tests.helpers.orthanc import OrthancRest
from tests.helpers.tenants import run_tenants, tenant_config


@pytest.fixture(scope="module")
def archive(rest: OrthancRest) -> Archive:
    return load_archive(rest)


def study_query(archive: Archive, **keys: str) -> object:
    return identifier("STUDY", PatientID=archive.patients, StudyInstanceUID="", **keys)


def test_study_level_shows_only_the_tenants_studies(ours: dict[str, int], archive: Archive) -> None:
    a, status = find(ours["OURS_A"], "OURS_A", study_query(archive))
    assert status == 0x0000
    assert values(a, "StudyInstanceUID") == {archive.a_shared.spec.study_uid, archive.a_other.spec.study_uid}
    b, _ = find(ours["OURS_B"], "OURS_B", study_query(archive))
    assert values(b, "StudyInstanceUID") == {archive.b_shared.spec.study_uid}


@pytest.mark.parametrize("model", ["S", "P"])
def test_every_level_answers_with_parent_keys(ours: dict[str, int], archive: Archive, model: str) -> None:
    study = archive.a_shared
    series, _ = find(
        ours["OURS_A"],
        "OURS_A",
        identifier(
            "SERIES",
            PatientID=archive.shared_patient,
            StudyInstanceUID=study.spec.study_uid,
            SeriesInstanceUID="",
            Modality="",
            NumberOfSeriesRelatedInstances="",
        ),
        model,
    )
    assert values(series, "SeriesInstanceUID") == set(study.series_uids)
    assert values(series, "StudyInstanceUID") == {study.spec.study_uid}
    assert values(series, "Modality") == {"CT", "MR"}
    assert values(series, "NumberOfSeriesRelatedInstances") == {"2"}
    images, status = find(
        ours["OURS_A"],
        "OURS_A",
        identifier(
            "IMAGE",
            PatientID=archive.shared_patient,
            StudyInstanceUID=study.spec.study_uid,
            SeriesInstanceUID=study.series_uids[0],
            SOPInstanceUID="",
            SOPClassUID="",
            InstanceNumber="",
        ),
        model,
    )
    assert status == 0x0000
    assert values(images, "SOPInstanceUID") == set(study.sop_uids[:2])
    assert values(images, "SOPClassUID") == {"1.2.840.10008.5.1.4.1.1.2"}
    assert values(images, "SeriesInstanceUID") == {study.series_uids[0]}
    assert values(images, "StudyInstanceUID") == {study.spec.study_uid}
    assert values(images, "QueryRetrieveLevel") == {"IMAGE"}
    assert values(images, "RetrieveAETitle") == {"OURS_A"}


def test_study_answers_carry_counts_within_the_view(ours: dict[str, int], archive: Archive) -> None:
    answers, _ = find(
        ours["OURS_A"],
        "OURS_A",
        identifier(
            "STUDY",
            StudyInstanceUID=archive.a_shared.spec.study_uid,
            ModalitiesInStudy="",
            SOPClassesInStudy="",
            NumberOfStudyRelatedSeries="",
            NumberOfStudyRelatedInstances="",
            PatientComments="",
            PatientName="",
        ),
    )
    (answer,) = answers
    assert set(answer.ModalitiesInStudy) == {"CT", "MR"}
    assert answer.NumberOfStudyRelatedSeries == 2
    assert answer.NumberOfStudyRelatedInstances == 4
    assert answer.SOPClassesInStudy == "1.2.840.10008.5.1.4.1.1.2"
    assert "PatientComments" in answer and not answer.PatientComments  # requested, unknown: empty
    assert str(answer.PatientName) == "Müller^Hans"


def test_patient_level_is_derived_from_the_tenants_own_studies(
    ours: dict[str, int], archive: Archive
) -> None:
    keys = {
        "PatientID": archive.shared_patient,
        "PatientName": "",
        "NumberOfPatientRelatedStudies": "",
        "NumberOfPatientRelatedInstances": "",
    }
    (a,), _ = find(ours["OURS_A"], "OURS_A", identifier("PATIENT", **keys), "P")
    assert str(a.PatientName) == "Müller^Hans"
    assert a.NumberOfPatientRelatedStudies == 1  # not B's study, not the unlabelled one
    assert a.NumberOfPatientRelatedInstances == 4
    (b,), _ = find(ours["OURS_B"], "OURS_B", identifier("PATIENT", **keys), "P")
    assert str(b.PatientName) == "Mueller^H"  # B never sees A's demographics
    assert b.NumberOfPatientRelatedStudies == 1


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ({"StudyDate": "20240101-20241231"}, "a_shared"),
        ({"StudyDate": "-20231231"}, "a_other"),
        ({"PatientName": "Müll*"}, "a_shared"),
        ({"PatientName": "müller^hans"}, "a_shared"),  # PN is case-insensitive by default
        ({"PatientName": "Sm?th*"}, "a_other"),
        ({"ModalitiesInStudy": "MR"}, "a_shared"),
        ({"ModalitiesInStudy": "US"}, None),  # B's modality in the same patient is not A's
    ],
)
def test_matching(ours: dict[str, int], archive: Archive, keys: dict[str, str], expected: str | None) -> None:
    answers, status = find(ours["OURS_A"], "OURS_A", study_query(archive, **keys))
    assert status == 0x0000
    wanted = set() if expected is None else {getattr(archive, expected).spec.study_uid}
    assert values(answers, "StudyInstanceUID") == wanted


def test_uid_list_matching(ours: dict[str, int], archive: Archive) -> None:
    uids = [archive.a_shared.spec.study_uid, archive.a_other.spec.study_uid, archive.b_shared.spec.study_uid]
    answers, _ = find(ours["OURS_A"], "OURS_A", identifier("STUDY", StudyInstanceUID="\\".join(uids)))
    assert values(answers, "StudyInstanceUID") == set(uids[:2])


def test_identifiers_other_than_names_are_case_sensitive(ours: dict[str, int], archive: Archive) -> None:
    answers, _ = find(
        ours["OURS_A"],
        "OURS_A",
        identifier("STUDY", PatientID=archive.shared_patient.lower(), StudyInstanceUID=""),
    )
    assert answers == []


def test_non_ascii_answers_keep_every_character(ours: dict[str, int], archive: Archive) -> None:
    plain, _ = find(
        ours["OURS_A"],
        "OURS_A",
        identifier("STUDY", StudyInstanceUID=archive.a_shared.spec.study_uid, PatientName=""),
    )
    assert plain[0].SpecificCharacterSet == "ISO_IR 192"
    assert str(plain[0].PatientName) == "Müller^Hans"
    latin = identifier("STUDY", StudyInstanceUID=archive.a_shared.spec.study_uid, PatientName="")
    latin.SpecificCharacterSet = "ISO_IR 100"
    answers, _ = find(ours["OURS_A"], "OURS_A", latin)
    assert answers[0].SpecificCharacterSet == "ISO_IR 100"
    assert str(answers[0].PatientName) == "Müller^Hans"


@pytest.mark.parametrize("level", ["BOGUS", ""])
def test_bad_query_level_is_a_failure_status(ours: dict[str, int], level: str) -> None:
    answers, status = find(ours["OURS_A"], "OURS_A", identifier(level, StudyInstanceUID=""))
    assert answers == [] and status == 0xA900


# --- side by side with the official plugin -----------------------------------------------


@pytest.mark.plugin
@pytest.mark.parametrize(
    "keys",
    [
        {"StudyDate": "20240101-"},
        {"AccessionNumber": ""},
        {"StudyDate": "20230101"},
    ],
)
def test_same_study_matches_as_the_plugin(
    ours: dict[str, int], plugin_ports: dict[str, int], archive: Archive, keys: dict[str, str]
) -> None:
    query = study_query(archive, **keys)
    for ours_aet, plugin_aet in (("OURS_A", "PLUGIN_A"), ("OURS_B", "PLUGIN_B")):
        mine, _ = find(ours[ours_aet], ours_aet, query)
        theirs, _ = find(plugin_ports[plugin_aet], plugin_aet, query)
        assert values(mine, "StudyInstanceUID") == values(theirs, "StudyInstanceUID")


@pytest.mark.plugin
def test_where_we_deliberately_differ_from_the_plugin(
    ours: dict[str, int], plugin_ports: dict[str, int], archive: Archive
) -> None:
    image = identifier(
        "IMAGE", StudyInstanceUID=archive.a_other.spec.study_uid, SOPInstanceUID="", SOPClassUID=""
    )
    theirs, status = find(plugin_ports["PLUGIN_A"], "PLUGIN_A", image)
    assert theirs == [] and status == 0xC000  # the plugin rejects the standard IMAGE level
    mine, status = find(ours["OURS_A"], "OURS_A", image)
    assert status == 0x0000 and values(mine, "SOPInstanceUID") == set(archive.a_other.sop_uids)
    study = identifier(
        "STUDY", StudyInstanceUID=archive.a_shared.spec.study_uid, NumberOfStudyRelatedInstances=""
    )
    theirs, _ = find(plugin_ports["PLUGIN_A"], "PLUGIN_A", study)
    assert "NumberOfStudyRelatedInstances" not in theirs[0]  # thin answers
    lower = identifier("STUDY", PatientID=archive.shared_patient.lower(), StudyInstanceUID="")
    theirs, _ = find(plugin_ports["PLUGIN_A"], "PLUGIN_A", lower)
    assert values(theirs, "StudyInstanceUID") == {archive.a_shared.spec.study_uid}  # case-insensitive IDs
    mine, _ = find(ours["OURS_A"], "OURS_A", lower)
    assert mine == []


# --- dcmtk findscu ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "level", "key"),
    [
        ("-S", "STUDY", "StudyInstanceUID"),
        ("-S", "SERIES", "SeriesInstanceUID"),
        ("-S", "IMAGE", "SOPInstanceUID"),
        ("-P", "PATIENT", "PatientID"),
    ],
)
def test_dcmtk_findscu_every_level(
    ours: dict[str, int], archive: Archive, model: str, level: str, key: str
) -> None:
    study = archive.a_other
    command = [
        dcmtk.tool("findscu"),
        model,
        "-aec",
        "OURS_A",
        "-k",
        f"QueryRetrieveLevel={level}",
        "-k",
        f"PatientID={study.spec.patient_id}",
        "-k",
        f"{key}",
    ]
    if level in ("SERIES", "IMAGE"):
        command += ["-k", f"StudyInstanceUID={study.spec.study_uid}"]
    if level == "IMAGE":
        command += ["-k", f"SeriesInstanceUID={study.series_uids[0]}"]
    result = subprocess.run(
        [*command, "127.0.0.1", str(ours["OURS_A"])], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    expected = {
        "StudyInstanceUID": [study.spec.study_uid],
        "SeriesInstanceUID": study.series_uids,
        "SOPInstanceUID": study.sop_uids,
        "PatientID": [study.spec.patient_id],
    }[key]
    for value in expected:
        assert value in result.stderr + result.stdout


# --- limits and trouble -------------------------------------------------------------------


def test_truncated_results_are_reported(orthanc: OrthancHandle, archive: Archive) -> None:
    port = free_port()
    config = tenant_config(
        orthanc,
        [{"AET": "LIMITED", "Port": port, "Labels": ["compat_a"]}],
        DicomAlwaysAllowFind=True,
        LimitFindResults=1,
    )
    with run_tenants(config):
        answers, status = find(port, "LIMITED", study_query(archive))
    assert len(answers) == 1
    assert status == 0xA700


def test_orthanc_unreachable_gives_a_failure_status_and_echo_still_works() -> None:
    port = free_port()
    config = {
        "Orthanc": {"Url": f"http://127.0.0.1:{free_port()}"},
        "MultitenantDicom": {"Servers": [{"AET": "LONELY", "Port": port, "Labels": ["x"]}]},
        "DicomAlwaysAllowFind": True,
        "DicomScpTimeout": 5,
        "TenantServer": {"HealthPort": 0, "BindAddress": "127.0.0.1"},
    }
    with run_tenants(config):
        answers, status = find(port, "LONELY", identifier("STUDY", StudyInstanceUID=""))
        assert answers == [] and status == 0xA700
        assoc = requesting_ae("TESTSCU").associate("127.0.0.1", port, ae_title="LONELY")
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()


def find_then_cancel(port: int, aet: str, query: Dataset) -> list[int]:
    """Statuses of a C-FIND whose C-CANCEL is sent right behind the request."""
    assoc = requesting_ae("TESTSCU").associate("127.0.0.1", port, ae_title=aet)
    try:
        responses = assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind, msg_id=7)
        context = next(
            c
            for c in assoc.accepted_contexts
            if c.abstract_syntax == StudyRootQueryRetrieveInformationModelFind
        )
        assoc.send_c_cancel(7, context.context_id)
        return [int(status.Status) for status, _ in responses]
    finally:
        assoc.release()


def store_patient_studies(rest: OrthancRest, count: int, label: str) -> str:
    patient = "CANCEL" + generate_uid()[-8:]
    for _ in range(count):
        rest.store_with_labels(
            to_bytes(make_instance(StudySpec(patient_id=patient), generate_uid(), 1, 1)), [label]
        )
    return patient


def test_c_cancel_stops_a_running_find(orthanc: OrthancHandle, rest: OrthancRest) -> None:
    """A C-CANCEL that arrives while the server is still working ends the find with 0xFE00.

    Orthanc is slowed down (a proxy delays its answers) and the cancel sent right behind
    the request, so it is there before the first answer: answers now leave faster than a
    client reads them, and a cancel sent after the first may come after the last (and is
    then rightly ignored)."""
    patient = store_patient_studies(rest, 30, "compat_a")
    port = free_port()
    with fault_proxy(orthanc.url) as proxy:
        config = tenant_config(
            orthanc, [{"AET": "SLOW", "Port": port, "Labels": ["compat_a"]}], DicomAlwaysAllowFind=True
        )
        config["Orthanc"]["Url"] = proxy.url
        with run_tenants(config):
            proxy.delay = 0.5
            statuses = find_then_cancel(
                port, "SLOW", identifier("STUDY", PatientID=patient, StudyInstanceUID="")
            )
    assert statuses == [0xFE00]


def test_c_cancel_read_before_its_request_is_served(
    orthanc: OrthancHandle, rest: OrthancRest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pynetdicom forgets the C-CANCELs it has read when its reactor starts serving a request:
    a cancel read before that moment (the reactor slower than the reading thread, as on a
    loaded machine, forced here with a delay) must still cancel (tenant_server/cancels.py)."""
    patient = store_patient_studies(rest, 5, "compat_a")
    serve = Association._serve_request

    def serve_late(self: Association, msg: Any, context_id: int) -> None:
        time.sleep(0.3)  # the C-CANCEL right behind the request is read meanwhile
        serve(self, msg, context_id)

    monkeypatch.setattr(Association, "_serve_request", serve_late)
    port = free_port()
    config = tenant_config(
        orthanc, [{"AET": "LATE", "Port": port, "Labels": ["compat_a"]}], DicomAlwaysAllowFind=True
    )
    with run_tenants(config):
        cancelled = find_then_cancel(
            port, "LATE", identifier("STUDY", PatientID=patient, StudyInstanceUID="")
        )
        # The next request on a new association is not touched by that cancel.
        answers, status = find(port, "LATE", identifier("STUDY", PatientID=patient, StudyInstanceUID=""))
    assert cancelled == [0xFE00]
    assert status == 0x0000 and len(answers) == 5


def test_counts_leave_out_children_of_another_tenant(ours: dict[str, int], rest: OrthancRest) -> None:
    """Orthanc's own counts include every child; ours only what the tenant may retrieve."""
    spec = StudySpec()
    own_series = generate_uid()
    spec.modality = "CT"
    for number in (1, 2):
        rest.store_with_labels(to_bytes(make_instance(spec, own_series, 1, number)), ["compat_a"])
    spec.modality = "US"  # another tenant's series planted in the study
    rest.store_with_labels(
        to_bytes(make_instance(spec, generate_uid(), 2, 1)), ["compat_b"], ("Series", "Instance")
    )
    spec.modality = "CT"  # another tenant's instance planted in our series
    rest.store_with_labels(to_bytes(make_instance(spec, own_series, 1, 3)), ["compat_b"], ("Instance",))
    spec.modality = "SR"  # an unlabelled series follows its study
    rest.upload(to_bytes(make_instance(spec, generate_uid(), 3, 1)))

    (study,), _ = find(
        ours["OURS_A"],
        "OURS_A",
        identifier(
            "STUDY",
            StudyInstanceUID=spec.study_uid,
            ModalitiesInStudy="",
            NumberOfStudyRelatedSeries="",
            NumberOfStudyRelatedInstances="",
        ),
    )
    assert set(study.ModalitiesInStudy) == {"CT", "SR"}
    assert (study.NumberOfStudyRelatedSeries, study.NumberOfStudyRelatedInstances) == (2, 3)
    series, _ = find(
        ours["OURS_A"],
        "OURS_A",
        identifier(
            "SERIES",
            StudyInstanceUID=spec.study_uid,
            SeriesInstanceUID=own_series,
            NumberOfSeriesRelatedInstances="",
        ),
    )
    assert [s.NumberOfSeriesRelatedInstances for s in series] == [2]
