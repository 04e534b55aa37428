"""Plain pynetdicom SCU calls for tests (default AE settings, like a client in the field)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, StoragePresentationContexts, build_role, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from tenant_server.orthanc import orthanc_id
from tenant_server.sockets import guard_answers

MODELS = {
    "S": (
        StudyRootQueryRetrieveInformationModelFind,
        StudyRootQueryRetrieveInformationModelMove,
        StudyRootQueryRetrieveInformationModelGet,
    ),
    "P": (
        PatientRootQueryRetrieveInformationModelFind,
        PatientRootQueryRetrieveInformationModelMove,
        PatientRootQueryRetrieveInformationModelGet,
    ),
}


def identifier(level: str, **keys: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(ds, keyword, value)
    return ds


def requesting_ae(calling: str) -> AE:
    """An AE proposing every query/retrieve model and Verification."""
    ae = AE(ae_title=calling)
    for model in MODELS.values():
        for sop_class in model:
            ae.add_requested_context(sop_class)
    ae.add_requested_context(Verification)
    return ae


def connect(ae: AE, port: int, called: str, **kwargs: Any) -> Association:
    """An association to a server on loopback, guarded against pynetdicom's reactor taking the
    answer a ``send_c_*()`` waits for (~1 exchange in 700, see tenant_server.sockets.guard_answers):
    tests must not flake on the client's race."""
    assoc = ae.associate("127.0.0.1", port, ae_title=called, **kwargs)
    guard_answers(assoc)
    return assoc


def find(
    port: int, called: str, ds: Dataset, model: str = "S", calling: str = "TESTSCU"
) -> tuple[list[Dataset], int]:
    """All answers of one C-FIND and the final status."""
    assoc = connect(requesting_ae(calling), port, called)
    assert assoc.is_established, f"association with {called} refused"
    answers, final = [], -1
    try:
        for status, answer in assoc.send_c_find(ds, MODELS[model][0]):
            if status is None or "Status" not in status:
                raise AssertionError("C-FIND got no response")
            if status.Status in (0xFF00, 0xFF01):
                answers.append(answer)
            else:
                final = int(status.Status)
    finally:
        assoc.release()
    return answers, final


def values(answers: Iterable[Dataset], keyword: str) -> set[str]:
    return {str(a.get(keyword, "")) for a in answers}


def move(port: int, called: str, ds: Dataset, destination: str, model: str = "S") -> list[Dataset]:
    """Every C-MOVE response (pending ones included)."""
    assoc = connect(requesting_ae("TESTSCU"), port, called)
    assert assoc.is_established
    try:
        return [status for status, _ in assoc.send_c_move(ds, destination, MODELS[model][1])]
    finally:
        assoc.release()


def get(port: int, called: str, ds: Dataset, model: str = "S") -> tuple[list[Dataset], list[Dataset]]:
    """C-GET responses and the instances received on the same association."""
    received: list[Dataset] = []

    def on_store(event: Any) -> int:
        received.append(event.dataset)
        return 0x0000

    ae = AE(ae_title="TESTSCU")
    ae.add_requested_context(MODELS[model][2])
    roles = []
    for context in StoragePresentationContexts[:120]:
        ae.add_requested_context(context.abstract_syntax)
        roles.append(build_role(context.abstract_syntax, scp_role=True))
    assoc = connect(ae, port, called, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    try:
        responses = [status for status, _ in assoc.send_c_get(ds, MODELS[model][2])]
    finally:
        assoc.release()
    return responses, received


def store(port: int, called: str, datasets: Iterable[Dataset], calling: str = "TESTSCU") -> list[Dataset]:
    """C-STORE each dataset on one association; the response of each."""
    ae = AE(ae_title=calling)
    for context in StoragePresentationContexts:
        ae.add_requested_context(context.abstract_syntax)
    ae.add_requested_context(CTImageStorage)
    assoc = connect(ae, port, called)
    assert assoc.is_established
    try:
        return [assoc.send_c_store(ds) for ds in datasets]
    finally:
        assoc.release()


LEVELS = ("Study", "Series", "Instance")


def ids_of(ds: Dataset) -> dict[str, str]:
    """Where Orthanc files this instance: its study, series and instance IDs."""
    parts = (str(ds.PatientID), str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))
    return {level: orthanc_id(*parts[: depth + 2]) for depth, level in enumerate(LEVELS)}
