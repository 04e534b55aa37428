"""Synthetic instances made fast: one pydicom-built template, then fixed-width byte substitution.

Building each instance with pydicom costs ~3 ms; a 50,000-study archive would spend minutes
just encoding. Here every UID, the PatientID and the StudyDate have a fixed width, so a new
instance is the template with a few same-length ``bytes.replace`` calls (microseconds), and
the result is still a valid DICOM Part 10 file (lengths and padding do not change).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from io import BytesIO

from local_orthanc.synthetic import StudySpec, make_instance, to_bytes
from pydicom import dcmread
from pydicom.dataset import Dataset

ROOT = "1.2.826.0.1.3680043.10.1515.77"  # under the synthetic module's implementation root
DEFAULT_DATE = "20240115"
FIND_DATE = "20230101"  # the studies that the "1,000 studies" C-FIND returns


def _uid(kind: int, run: str, number: int) -> str:
    return f"{ROOT}.{kind}.{run}.{10**12 + number}"  # fixed width, no leading zero


_PLACEHOLDER_RUN = "999999"
_PLACE = {
    "study": _uid(1, _PLACEHOLDER_RUN, 899999999999),
    "series": _uid(2, _PLACEHOLDER_RUN, 899999999999),
    "sop": _uid(3, _PLACEHOLDER_RUN, 899999999999),
    "patient": "PZ99999999999999",
    "number": "999999",
}


def _template() -> bytes:
    spec = StudySpec(
        patient_id=_PLACE["patient"],
        study_uid=_PLACE["study"],
        study_date=DEFAULT_DATE,
        study_description="Bench study",
        accession_number="",
    )
    ds = make_instance(spec, _PLACE["series"], 1, 1, sop_uid=_PLACE["sop"])
    ds.InstanceNumber = _PLACE["number"]
    data = to_bytes(ds)
    for value in _PLACE.values():
        if data.count(value.encode()) < 1:
            raise AssertionError(f"placeholder {value} missing from the template")
    return data


@dataclass(frozen=True)
class StudyKeys:
    patient_id: str
    study_uid: str
    series_uid: str
    date: str
    instances: int


class Factory:
    """Unique studies for one benchmark run (a random run number keeps runs apart)."""

    def __init__(self, run: str | None = None) -> None:
        self.run = run or str(random.randrange(100_000, 900_000))
        self.template = _template()
        self._next = 0

    def study(self, instances: int, date: str = DEFAULT_DATE, number: int | None = None) -> StudyKeys:
        if number is None:
            number = self._next
            self._next += 1
        return StudyKeys(
            patient_id=f"PB{self.run}{number:08d}",
            study_uid=_uid(1, self.run, number),
            series_uid=_uid(2, self.run, number),
            date=date,
            instances=instances,
        )

    def instance(self, study: StudyKeys, index: int) -> bytes:
        """Instance ``index`` (0-based) of the study's single series."""
        number = int(study.study_uid.rsplit(".", 1)[1]) - 10**12
        sop = _uid(3, self.run, number * 1000 + index)
        data = self.template
        for key, value in (
            ("study", study.study_uid),
            ("series", study.series_uid),
            ("sop", sop),
            ("patient", study.patient_id),
            ("number", f"{index + 1:06d}"),
        ):
            data = data.replace(_PLACE[key].encode(), value.encode())
        if study.date != DEFAULT_DATE:
            data = data.replace(DEFAULT_DATE.encode(), study.date.encode())
        return data

    def instances(self, study: StudyKeys) -> list[bytes]:
        return [self.instance(study, i) for i in range(study.instances)]


def as_dataset(data: bytes) -> Dataset:
    return dcmread(BytesIO(data))
