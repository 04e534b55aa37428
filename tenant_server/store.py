"""C-STORE: store in Orthanc, label for the tenant, and never let one tenant into another's data.

The official plugin labels whatever study Orthanc files an instance under, so a tenant
that knows another's PatientID and StudyInstanceUID can forge (or copy) an instance and
take the whole study into its view. Here, with ``StoreIsolation: Strict`` (the default),
an instance may only join a patient's study, series or instance that does not exist yet
or that is already in this tenant's view; anything else is refused (0x0124) before a
byte is written. Success is only answered once the instance is stored *and* labelled.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass

from pydicom.dataset import Dataset

from tenant_server.config import TenantSettings
from tenant_server.orthanc import OrthancClient, OrthancError, orthanc_id
from tenant_server.view import LabelView

# DICOM statuses this module answers (PS3.4 B.2.3, PS3.7 C), named for readers.
SUCCESS = 0x0000
NOT_AUTHORIZED = 0x0124  # refused: would attach to another tenant's data, or filtered out
OUT_OF_RESOURCES = 0xA700  # transient: Orthanc down, full, or labelling failed; retry later
DATASET_MISMATCH = 0xA900  # SOP Class/Instance UID of the data set differ from the command
CANNOT_UNDERSTAND = 0xC000  # unparsable data set or missing UIDs

UNLABELLED_GRACE = 3.0  # seconds to wait for a peer replica to finish labelling a new study
GUARDED_LEVELS = ("Study", "Series", "Instance")


@dataclass(frozen=True)
class StoreOutcome:
    status: int
    reason: str
    orthanc_status: str = ""
    instance_id: str = ""


@dataclass(frozen=True)
class InstanceKeys:
    patient_id: str
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str

    def orthanc_ids(self) -> dict[str, str]:
        """Where Orthanc will file this instance, known before it is stored."""
        parts = (self.patient_id, self.study_uid, self.series_uid, self.sop_uid)
        return {
            level: orthanc_id(*parts[: depth + 1])
            for depth, level in enumerate(("Patient", "Study", "Series", "Instance"))
        }


def read_keys(ds: Dataset) -> InstanceKeys:
    """The identifying UIDs; raises ValueError (answered 0xC000) when they are unusable."""
    values = {}
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        value = str(ds.get(keyword, "") or "").strip()
        if not value:
            raise ValueError(f"{keyword} is missing")
        values[keyword] = value
    patient = ds.get("PatientID", "")
    return InstanceKeys(
        patient_id=str(patient or "").strip(),
        study_uid=values["StudyInstanceUID"],
        series_uid=values["SeriesInstanceUID"],
        sop_uid=values["SOPInstanceUID"],
        sop_class_uid=values["SOPClassUID"],
    )


class StripedLocks:
    """A fixed set of locks picked by key: stores into one study queue up in this process."""

    def __init__(self, stripes: int = 64) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    def __call__(self, key: str) -> threading.Lock:
        return self._locks[hash(key) % len(self._locks)]


class Storer:
    def __init__(self, client: OrthancClient, tenant: TenantSettings, record_sender: bool = False) -> None:
        self.client = client
        self.tenant = tenant
        self.view = LabelView(tenant.labels, tenant.constraint)
        self.strict = tenant.store_isolation == "Strict"
        self.record_sender = record_sender
        self._locks = StripedLocks()

    def _guarded_levels(self) -> tuple[str, ...]:
        """Levels where ownership is recorded; the study stands in when none is labelled."""
        levels = tuple(level for level in GUARDED_LEVELS if level in self.tenant.store_levels)
        return levels or ("Study",)

    def _foreign(self, ids: dict[str, str], before_store: bool) -> str | None:
        """The first existing resource this tenant may not attach to, or None.

        After our own store, an unlabelled resource is the one we just created.
        """
        for level in self._guarded_levels():
            labels = self.client.labels(level, ids[level])
            if labels is None or (not labels and not before_store):
                continue
            if not labels:
                labels = self._await_labels(level, ids[level])
            if not self.view.may_attach(labels):
                return level
        return None

    def _await_labels(self, level: str, resource: str) -> list[str]:
        """An unlabelled resource may be one another replica of this tenant is labelling now."""
        deadline = time.monotonic() + UNLABELLED_GRACE
        labels: list[str] = []
        while time.monotonic() < deadline:
            time.sleep(0.1)
            labels = self.client.labels(level, resource) or []
            if labels:
                break
        return labels

    def store(
        self, data: bytes, keys: InstanceKeys, sender_aet: str = "", sender_ip: str = ""
    ) -> StoreOutcome:
        ids = keys.orthanc_ids()
        try:
            with self._locks(ids["Study"]):
                return self._store_locked(data, ids, sender_aet, sender_ip)
        except OrthancError as exc:
            return StoreOutcome(OUT_OF_RESOURCES, str(exc))

    def _store_locked(
        self, data: bytes, ids: dict[str, str], sender_aet: str, sender_ip: str
    ) -> StoreOutcome:
        if self.strict:
            level = self._foreign(ids, before_store=True)
            if level is not None:
                return StoreOutcome(
                    NOT_AUTHORIZED, f"isolation: the {level.lower()} belongs to another tenant"
                )
        answer = self.client.store(data)
        status = str(answer.get("Status", ""))
        if status == "StorageFull":
            return StoreOutcome(OUT_OF_RESOURCES, "Orthanc storage is full", status)
        if status == "FilteredOut":
            return StoreOutcome(NOT_AUTHORIZED, "Orthanc's filters refused the instance", status)
        if status not in ("Success", "AlreadyStored"):
            return StoreOutcome(CANNOT_UNDERSTAND, f"Orthanc did not store the instance ({status})", status)
        created = status == "Success"
        stored = {
            "Patient": answer.get("ParentPatient", ids["Patient"]),
            "Study": answer.get("ParentStudy", ids["Study"]),
            "Series": answer.get("ParentSeries", ids["Series"]),
            "Instance": answer.get("ID", ids["Instance"]),
        }
        if self.strict and (stored != ids or self._foreign(stored, before_store=False)):
            # Another tenant created the study between our check and our store.
            self._undo(created, stored["Instance"])
            return StoreOutcome(NOT_AUTHORIZED, "isolation: the study was claimed concurrently", status)
        try:
            self._label(stored)
        except OrthancError as exc:
            self._undo(created, stored["Instance"])
            return StoreOutcome(OUT_OF_RESOURCES, f"labelling failed: {exc}", status)
        if self.record_sender:
            self._record_sender(stored["Instance"], sender_aet, sender_ip)
        return StoreOutcome(SUCCESS, "stored", status, stored["Instance"])

    def _label(self, ids: dict[str, str]) -> None:
        for level in self.tenant.store_levels:
            for label in self.tenant.labels:
                self.client.add_label(level, ids[level], label)

    def _undo(self, created: bool, instance_id: str) -> None:
        """Remove what this request created; a pre-existing instance is never touched."""
        if created:
            # If Orthanc is gone, the failure status already tells the modality to retry.
            with contextlib.suppress(OrthancError):
                self.client.delete("Instance", instance_id)

    def _record_sender(self, instance_id: str, sender_aet: str, sender_ip: str) -> None:
        for name, value in (
            ("SenderAet", sender_aet),
            ("SenderIp", sender_ip),
            ("TenantAet", self.tenant.aet),
        ):
            self.client.set_metadata(instance_id, name, value)
