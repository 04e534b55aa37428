"""A small multi-tenant archive loaded straight through Orthanc's REST API with labels.

Tenant A (label compat_a) and tenant B (compat_b) share patient ``shared`` (same
PatientID, different names), as two hospitals sending the same national ID would.
Every ID and UID is unique to one test run, so the data does not collide with other tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from local_orthanc.synthetic import StudySpec, make_instance, to_bytes
from pydicom.uid import generate_uid

from tests.helpers.orthanc import OrthancRest


@dataclass
class Study:
    spec: StudySpec
    modalities: list[str]
    sop_uids: list[str] = field(default_factory=list)
    series_uids: list[str] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)


def load_study(
    rest: OrthancRest,
    spec: StudySpec,
    modalities: list[str],
    labels: list[str],
    per_series: int = 2,
    levels: tuple[str, ...] = ("Study", "Series", "Instance"),
) -> Study:
    """One study with one series per modality, labelled like a tenant's C-STORE would."""
    study = Study(spec, modalities)
    for number, modality in enumerate(modalities, start=1):
        series_uid = generate_uid()
        study.series_uids.append(series_uid)
        spec.modality = modality
        for instance in range(1, per_series + 1):
            ds = make_instance(spec, series_uid, number, instance)
            study.sop_uids.append(str(ds.SOPInstanceUID))
            study.ids = rest.store_with_labels(to_bytes(ds), labels, levels)
    return study


@dataclass
class Archive:
    run: str
    shared_patient: str
    a_shared: Study  # tenant A's study of the shared patient
    b_shared: Study  # tenant B's study of the shared patient
    a_other: Study  # tenant A's study of another patient
    unlabelled: Study  # a study of the shared patient nobody labelled

    @property
    def patients(self) -> str:
        """A list-matching PatientID key covering this archive's patients only."""
        return f"{self.shared_patient}\\{self.a_other.spec.patient_id}"


def load_archive(rest: OrthancRest) -> Archive:
    run = generate_uid()[-8:]
    shared = f"SHARED{run}"
    a_shared = load_study(
        rest,
        StudySpec(
            patient_id=shared, patient_name="Müller^Hans", study_date="20240105", accession_number=f"A{run}"
        ),
        ["CT", "MR"],
        ["compat_a"],
    )
    b_shared = load_study(
        rest,
        StudySpec(
            patient_id=shared, patient_name="Mueller^H", study_date="20240110", accession_number=f"B{run}"
        ),
        ["US"],
        ["compat_b"],
    )
    a_other = load_study(
        rest,
        StudySpec(patient_id=f"OTHER{run}", patient_name="Smith^John", study_date="20230101"),
        ["CT"],
        ["compat_a"],
        per_series=3,
    )
    unlabelled = load_study(rest, StudySpec(patient_id=shared, patient_name="Nobody"), ["CR"], [])
    return Archive(run, shared, a_shared, b_shared, a_other, unlabelled)
