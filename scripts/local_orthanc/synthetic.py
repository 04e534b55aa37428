"""Small synthetic DICOM studies for tests, the demo and benchmarks.

Each instance is a tiny but valid CT image (8x8 pixels), so thousands fit in memory and
Orthanc indexes them as it would real data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

IMPLEMENTATION_UID = UID("1.2.826.0.1.3680043.10.1515.1")


@dataclass
class StudySpec:
    """What one synthetic study looks like; every field has a sensible default."""

    patient_id: str = field(default_factory=lambda: "PAT" + generate_uid()[-10:])
    patient_name: str = "Doe^Jane"
    study_uid: str = field(default_factory=generate_uid)
    study_date: str = "20240115"
    study_time: str = "101500"
    study_description: str = "Synthetic study"
    accession_number: str = ""
    modality: str = "CT"
    series_count: int = 1
    instances_per_series: int = 2
    series_uids: list[str] = field(default_factory=list)


def make_instance(
    spec: StudySpec, series_uid: str, series_number: int, instance_number: int, sop_uid: str | None = None
) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = IMPLEMENTATION_UID
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientID = spec.patient_id
    ds.PatientName = spec.patient_name
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.StudyInstanceUID = spec.study_uid
    ds.StudyDate = spec.study_date
    ds.StudyTime = spec.study_time
    ds.StudyDescription = spec.study_description
    ds.AccessionNumber = spec.accession_number
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.Modality = spec.modality
    ds.InstanceNumber = instance_number
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = bytes(range(128))
    return ds


def study_instances(spec: StudySpec) -> Iterator[Dataset]:
    """All instances of the study, creating series UIDs on first use."""
    while len(spec.series_uids) < spec.series_count:
        spec.series_uids.append(generate_uid())
    for number, series_uid in enumerate(spec.series_uids, start=1):
        for instance in range(1, spec.instances_per_series + 1):
            yield make_instance(spec, series_uid, number, instance)


def to_bytes(ds: Dataset) -> bytes:
    """The dataset as a DICOM Part 10 file."""
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()
