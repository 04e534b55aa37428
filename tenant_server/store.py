"""C-STORE: store in Orthanc, label for the tenant, and never let one tenant into another's data.

The official plugin labels whatever study Orthanc files an instance under, so a tenant
that knows another's PatientID and StudyInstanceUID can forge (or copy) an instance and
take the whole study into its view. Here, with ``StoreIsolation: Strict`` (the default),
an instance may only join a patient's study, series or instance that does not exist yet
or that is already in this tenant's view; anything else is refused (0x0124) before a
byte is written. Success is only answered once the instance is stored *and* labelled.
"""

from __future__ import annotations

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
SENDER_METADATA = ("SenderAet", "SenderIp", "TenantAet")


@dataclass(frozen=True)
class OrthancTraits:
    overwrites: bool
    sender_metadata: tuple[str, ...]


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


class OwnedResources:
    """Studies and series this process recently stored and labelled for the tenant.

    A series of 500 images then costs one POST and one label PUT per image instead of
    re-checking and re-labelling its study and series each time. Entries expire so a label
    an administrator removes is noticed within ``ttl`` seconds.
    """

    def __init__(self, ttl: float = 30.0, capacity: int = 10000) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._expiry: dict[str, float] = {}
        self._lock = threading.Lock()

    def __contains__(self, resource: str) -> bool:
        with self._lock:
            expiry = self._expiry.get(resource)
            return expiry is not None and expiry > time.monotonic()

    def add(self, *resources: str) -> None:
        with self._lock:
            if len(self._expiry) >= self.capacity:
                now = time.monotonic()
                self._expiry = {k: v for k, v in self._expiry.items() if v > now}
                if len(self._expiry) >= self.capacity:
                    self._expiry.clear()
            expiry = time.monotonic() + self.ttl
            for resource in resources:
                self._expiry[resource] = expiry


class Storer:
    def __init__(self, client: OrthancClient, tenant: TenantSettings) -> None:
        self.client = client
        self.tenant = tenant
        self.view = LabelView(tenant.labels, tenant.constraint)
        self.strict = tenant.store_isolation == "Strict"
        self.owned = OwnedResources()
        self._locks = StripedLocks()
        self._orthanc: OrthancTraits | None = None
        # Instances this process stored but could neither label nor remove (Orthanc failed
        # halfway), by instance ID. Left alone, an unlabelled new study would look like
        # someone else's and the modality's retry would be refused for good.
        self._orphans: dict[str, dict[str, str]] = {}
        self._orphans_lock = threading.Lock()

    def _traits(self) -> OrthancTraits:
        """Read once from ``/system`` (lazily: Orthanc may be down when the server starts)."""
        if self._orthanc is None:
            system = self.client.system()
            self._orthanc = OrthancTraits(
                overwrites=system.get("OverwriteInstances", False) not in (False, "Never"),
                sender_metadata=tuple(
                    name for name in SENDER_METADATA if name in system.get("UserMetadata", {})
                ),
            )
        return self._orthanc

    def _guarded_levels(self) -> tuple[str, ...]:
        """Levels where ownership is recorded; the study stands in when none is labelled."""
        levels = tuple(level for level in GUARDED_LEVELS if level in self.tenant.store_levels)
        return levels or ("Study",)

    def _refusal(self, level: str, resource: str, before_store: bool) -> str | None:
        """``level`` when the existing resource is not this tenant's to add to; None if it is
        (or does not exist, or is the unlabelled resource this very request created)."""
        if before_store and not self.client.exists(level, resource):
            return None  # the usual case for new data, answered without reading any labels
        labels = self.client.labels(level, resource)
        if labels is None or (not labels and not before_store):
            return None
        if not labels:
            labels = self._await_labels(level, resource)
        return None if self.view.may_attach(labels) else level

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

    def _check_parents(self, ids: dict[str, str]) -> tuple[str | None, bool]:
        """Check the existing study and series before storing: (refused level, study existed)."""
        guarded = self._guarded_levels()
        if ids["Series"] in self.owned:
            return None, True
        study_existed = True
        if "Study" in guarded and ids["Study"] not in self.owned:
            exists = self.client.exists("Study", ids["Study"])
            labels = self.client.labels("Study", ids["Study"]) if exists else None
            study_existed = labels is not None
            if labels is not None and not self.view.may_attach(
                labels or self._await_labels("Study", ids["Study"])
            ):
                return "Study", True
        if study_existed and "Series" in guarded:
            return self._refusal("Series", ids["Series"], before_store=True), study_existed
        return None, study_existed

    def store(
        self, data: bytes, keys: InstanceKeys, sender_aet: str = "", sender_ip: str = ""
    ) -> StoreOutcome:
        ids = keys.orthanc_ids()
        self._remove_orphans()
        try:
            with self._locks(ids["Study"]):
                return self._store_locked(data, ids, sender_aet, sender_ip)
        except OrthancError as exc:
            return StoreOutcome(OUT_OF_RESOURCES, str(exc))

    def _store_locked(
        self, data: bytes, ids: dict[str, str], sender_aet: str, sender_ip: str
    ) -> StoreOutcome:
        study_existed = True
        if self.strict:
            refused, study_existed = self._check_parents(ids)
            # When Orthanc overwrites, a POST replaces an existing instance: check it first.
            if refused is None and self._traits().overwrites and "Instance" in self._guarded_levels():
                refused = self._refusal("Instance", ids["Instance"], before_store=True)
            if refused is not None:
                return StoreOutcome(
                    NOT_AUTHORIZED, f"isolation: the {refused.lower()} belongs to another tenant"
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
        claim = self.strict and not study_existed and "Study" in self.tenant.store_levels
        if self.strict:
            refused = self._after_store(stored, ids, created, study_existed or claim)
            if refused is not None:
                self._undo(created, stored)
                return StoreOutcome(NOT_AUTHORIZED, refused, status)
        try:
            if claim and self._claim_study(stored["Study"], created):
                self._undo(created, stored)
                return StoreOutcome(
                    NOT_AUTHORIZED, "isolation: the study was claimed concurrently by another tenant", status
                )
            self._label(stored, done=("Study",) if claim else ())
        except OrthancError as exc:
            self._undo(created, stored)
            return StoreOutcome(OUT_OF_RESOURCES, f"labelling failed: {exc}", status)
        self.owned.add(stored["Study"], stored["Series"])
        self._record_sender(
            stored["Instance"], {"SenderAet": sender_aet, "SenderIp": sender_ip, "TenantAet": self.tenant.aet}
        )
        return StoreOutcome(SUCCESS, "stored", status, stored["Instance"])

    def _after_store(
        self, stored: dict[str, str], ids: dict[str, str], created: bool, study_existed: bool
    ) -> str | None:
        """Close the races the checks before storing leave open; a reason to refuse, or None.

        A new study this tenant labels is checked by ``_claim_study`` instead (callers pass
        ``study_existed=True`` then)."""
        if stored != ids:
            return "isolation: Orthanc filed the instance elsewhere than its UIDs say"
        # A copy of an existing instance: nothing was written, but it must be ours to label.
        if (
            not created
            and "Instance" in self._guarded_levels()
            and self._refusal("Instance", stored["Instance"], before_store=False)
        ):
            return "isolation: the instance belongs to another tenant"
        if not study_existed and self._refusal("Study", stored["Study"], before_store=False):
            return "isolation: the study was claimed concurrently by another tenant"
        return None

    def _claim_study(self, study: str, created: bool) -> bool:
        """Label a study this store created, then make sure no other tenant claimed it too:
        True (and the label taken back) when one did.

        Labelling *before* looking is what closes the race: of two tenants creating one
        study at the same moment, the later look sees both labels, so both may refuse but
        never both accept (looking first, both could see none and both label it). The look
        is cheap when the study holds just the instance this request created: anyone who
        stores into it from now on finds this label when it looks. Otherwise (someone else
        stored into it meanwhile) the study's labels are read.
        """
        for label in self.tenant.labels:
            self.client.add_label("Study", study, label)
        if created and (self.client.statistics("Study", study) or {}).get("CountInstances") == 1:
            return False
        if not set(self.client.labels("Study", study) or []) - set(self.tenant.labels):
            return False
        for label in self.tenant.labels:
            self.client.remove_label("Study", study, label)
        return True

    def _label(self, ids: dict[str, str], done: tuple[str, ...] = ()) -> None:
        for level in self.tenant.store_levels:
            if level in done or (level in ("Study", "Series") and ids[level] in self.owned):
                continue  # labelled by this request's claim or an earlier store of this process
            for label in self.tenant.labels:
                self.client.add_label(level, ids[level], label)

    def _undo(self, created: bool, stored: dict[str, str]) -> None:
        """Remove what this request created; a pre-existing instance is never touched."""
        if not created:
            return
        try:
            self.client.delete("Instance", stored["Instance"])
        except OrthancError:  # Orthanc is failing: the next store retries the removal
            with self._orphans_lock:
                self._orphans[stored["Instance"]] = stored

    def _remove_orphans(self) -> None:
        """Retry removing instances a failed store left behind, before anything else is stored.

        Each removal holds its study's lock, so it cannot interleave with a store into that
        study of this process; one that has meanwhile been labelled for the tenant is kept.
        While Orthanc still fails they stay listed (the store itself then fails too).
        """
        with self._orphans_lock:
            pending = list(self._orphans.items())
        deepest = self._guarded_levels()[-1]
        for instance_id, stored in pending:
            with self._locks(stored["Study"]):
                try:
                    # A retry through another replica may have labelled (and acknowledged) it.
                    labels = self.client.labels(deepest, stored[deepest])
                    if labels is not None and not self.view.may_attach(labels):
                        self.client.delete("Instance", instance_id)
                except OrthancError:
                    return
            with self._orphans_lock:
                self._orphans.pop(instance_id, None)

    def _record_sender(self, instance_id: str, values: dict[str, str]) -> None:
        """Who sent the instance, in the user metadata the Orthanc administrator declared
        (``UserMetadata``); Orthanc's own RemoteAET cannot be written over REST."""
        for name in self._traits().sender_metadata:
            self.client.set_metadata(instance_id, name, values[name])
