"""pynetdicom event handlers for one tenant: access checks, then the operation, then an audit line.

Handlers never raise into pynetdicom for expected trouble (Orthanc down, a bad
identifier, a refused caller): each becomes the DICOM status PS3.4 defines for it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from io import BytesIO
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_context, evt
from pynetdicom.presentation import PresentationContext

from tenant_server.access import REJECT_LIMIT, AccessPolicy
from tenant_server.answer_stream import DirectAnswers
from tenant_server.audit import Audit
from tenant_server.cancels import keep_late_cancels
from tenant_server.config import DicomSettings, TenantSettings
from tenant_server.encoding import IncompleteEncoding, verify_complete
from tenant_server.final_responses import suboperation_counts, watch_final_responses, when_answered
from tenant_server.find import Finder
from tenant_server.hierarchy import InstanceRef
from tenant_server.identifiers import UNIQUE_KEY, IdentifierError, Query, build_answer, parse_query
from tenant_server.orthanc import OrthancClient, OrthancError
from tenant_server.part10 import file_meta
from tenant_server.read_ahead import read_ahead
from tenant_server.retrieve import Retriever
from tenant_server.sockets import TUNING_HANDLERS
from tenant_server.store import CANNOT_UNDERSTAND, DATASET_MISMATCH, Storer, read_keys
from tenant_server.store_response import direct_store_responses
from tenant_server.telemetry import Telemetry
from tenant_server.view import LabelView

NOT_AUTHORIZED = 0x0124
FIND_OUT_OF_RESOURCES = 0xA700
IDENTIFIER_MISMATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000
CANCELLED = 0xFE00
PENDING = 0xFF00
RETRIEVE_OUT_OF_RESOURCES = 0xA701


_refusing = threading.local()


class Refusal(Exception):
    """A retrieve refused before any sub-operation; pynetdicom answers it with 0xC514."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        _refusing.active = True  # pynetdicom is about to log it: see RefusalLogFilter


class RefusalLogFilter(logging.Filter):
    """Drop pynetdicom's two ERROR lines for a ``Refusal`` (its generic "the handler must
    yield..." message, then the traceback): the refusal is an answered and audited outcome,
    and an ERROR with a traceback would send an administrator looking for a bug."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(_refusing, "active", False) or record.levelno < logging.ERROR:
            return True
        if record.exc_info and isinstance(record.exc_info[1], Refusal):
            _refusing.active = False
        return False


_PYNETDICOM_SERVICES = logging.getLogger("pynetdicom.service_class")
if not any(isinstance(f, RefusalLogFilter) for f in _PYNETDICOM_SERVICES.filters):
    _PYNETDICOM_SERVICES.addFilter(RefusalLogFilter())


class CancelWatch:
    """Whether the SCU sent a C-CANCEL for this request; stays True once seen
    (pynetdicom's ``event.is_cancelled`` consumes the C-CANCEL it reports)."""

    def __init__(self, event: evt.Event) -> None:
        self.event = event
        self.seen = False

    def __call__(self) -> bool:
        self.seen = self.seen or bool(self.event.is_cancelled)
        return self.seen


def status(code: int, comment: str = "") -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]
    return ds


def caller(event: evt.Event) -> tuple[str, str]:
    requestor = event.assoc.requestor
    return str(requestor.ae_title).strip(), str(requestor.address)


def requested_by(assoc: Any) -> str:
    """The calling AET of an association's request, also while it is still being negotiated."""
    request = assoc.requestor.primitive
    return str(getattr(request, "calling_ae_title", "") or assoc.requestor.ae_title).strip()


def read_query(event: evt.Event) -> Query:
    """The request's identifier as a query, refused unless its encoding is whole."""
    request: Any = event.request
    raw = request.Identifier
    if raw is not None:
        syntax = UID(str(event.context.transfer_syntax))
        try:
            verify_complete(
                raw.getvalue(), syntax.is_implicit_VR, syntax.is_little_endian, syntax.is_deflated
            )
        except IncompleteEncoding as exc:
            raise IdentifierError(f"identifier is not a complete data set: {exc}") from exc
    return parse_query(event.identifier)


def _uids(query: Query) -> dict[str, str]:
    """The UIDs of a query for the audit log (other keys are named, not valued: they may be PHI)."""
    return {
        str(UNIQUE_KEY[level]): query.constraints[UNIQUE_KEY[level]]
        for level in ("Study", "Series", "Instance")
        if UNIQUE_KEY[level] in query.constraints
    }


def storage_contexts(refs: list[InstanceRef]) -> list[PresentationContext]:
    """One context per SOP class with every transfer syntax its instances are stored in."""
    syntaxes: dict[str, list[str]] = {}
    for ref in refs:
        wanted = syntaxes.setdefault(ref.sop_class_uid, [])
        if ref.transfer_syntax and ref.transfer_syntax not in wanted:
            wanted.append(ref.transfer_syntax)
    contexts = []
    for sop_class, stored in list(syntaxes.items())[:128]:
        fallback = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
        if any(UID(ts).is_compressed for ts in stored):
            fallback = []
        contexts.append(build_context(sop_class, list(dict.fromkeys([*stored, *fallback]))))
    return contexts


class TenantHandlers:
    def __init__(
        self,
        tenant: TenantSettings,
        dicom: DicomSettings,
        client: OrthancClient,
        telemetry: Telemetry,
        audit_query_values: bool = False,
    ) -> None:
        self.tenant = tenant
        self.audit_query_values = audit_query_values
        self.client = client
        view = LabelView(tenant.labels, tenant.constraint)
        self.policy = AccessPolicy(tenant, dicom)
        self.finder = Finder(client, view, dicom, tenant.aet)
        self.retriever = Retriever(client, view)
        self.storer = Storer(client, tenant)
        self.audit = Audit(tenant.aet)
        self.telemetry = telemetry

    def bindings(self) -> list[tuple[Any, Any]]:
        return [
            *TUNING_HANDLERS,
            (evt.EVT_CONN_OPEN, keep_late_cancels),
            (evt.EVT_CONN_OPEN, direct_store_responses),
            (evt.EVT_CONN_OPEN, watch_final_responses),
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_ESTABLISHED, self.on_established),
            (evt.EVT_C_ECHO, self.on_echo),
            (evt.EVT_C_FIND, self.on_find),
            (evt.EVT_C_MOVE, self.on_move),
            (evt.EVT_C_GET, self.on_get),
            (evt.EVT_C_STORE, self.on_store),
        ]

    # --- associations ---------------------------------------------------------------

    def on_requested(self, event: evt.Event) -> None:
        """Access checks on the A-ASSOCIATE-RQ itself: pynetdicom raises EVT_REQUESTED before
        negotiation copies the calling AET to ``assoc.requestor``, so it is read from the request."""
        assoc = event.assoc
        request: Any = assoc.requestor.primitive
        calling = requested_by(assoc)
        called = str(getattr(request, "called_ae_title", "") or "").strip()
        peer = str(assoc.requestor.address)
        refusal = self.policy.association_refusal(calling, called, peer)
        per_caller = self.tenant.max_associations_per_caller
        if refusal is None and per_caller is not None:
            others = [
                a for a in assoc.ae.active_associations if a is not assoc and requested_by(a) == calling
            ]
            if len(others) >= per_caller:
                refusal = REJECT_LIMIT
        if refusal is None:
            return
        assoc.acse.send_reject(*refusal)
        self.telemetry.association_rejected(self.tenant.aet)
        self.audit.event(
            "association-rejected",
            security=True,
            calling_aet=calling,
            called_aet=called,
            peer=peer,
            reason=f"{refusal[0]:#04x}/{refusal[1]:#04x}/{refusal[2]:#04x}",
        )
        assoc.kill()

    def on_established(self, event: evt.Event) -> None:
        calling, peer = caller(event)
        self.telemetry.association_opened(self.tenant.aet)
        self.audit.event("association-opened", calling_aet=calling, peer=peer)

    def _audit_query(self, query: Query) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "query_level": query.qr_level,
            "uids": _uids(query),
            "keys": sorted(str(t) for t in query.constraints),
        }
        if self.audit_query_values:  # the administrator asked for PHI in the log
            fields["values"] = {str(tag): value for tag, value in query.constraints.items()}
        return fields

    def _allowed(self, event: evt.Event, operation: str) -> bool:
        calling, peer = caller(event)
        if self.policy.permits(operation, calling, peer):
            return True
        self.audit.event(
            "operation-refused", security=True, operation=operation, calling_aet=calling, peer=peer
        )
        self.telemetry.operation(self.tenant.aet, operation, "refused", 0.0)
        return False

    def _finish(self, event: evt.Event, operation: str, start: float, code: int, **fields: Any) -> None:
        elapsed = time.perf_counter() - start
        calling, peer = caller(event)
        outcome = "success" if code in (0x0000, 0xB000) else "cancel" if code == CANCELLED else "failure"
        self.telemetry.operation(self.tenant.aet, operation, outcome, elapsed)
        self.audit.event(
            operation.lower(),
            security=code == NOT_AUTHORIZED,
            calling_aet=calling,
            peer=peer,
            status=f"0x{code:04X}",
            duration_ms=round(elapsed * 1000, 1),
            **fields,
        )

    # --- C-ECHO ---------------------------------------------------------------------

    def on_echo(self, event: evt.Event) -> int:
        start = time.perf_counter()
        code = 0x0000 if self._allowed(event, "Echo") else NOT_AUTHORIZED
        self._finish(event, "Echo", start, code)
        return code

    # --- C-FIND ---------------------------------------------------------------------

    def on_find(self, event: evt.Event) -> Iterator[tuple[int | Dataset, Dataset | None]]:
        start = time.perf_counter()
        if not self._allowed(event, "Find"):
            yield status(NOT_AUTHORIZED, "calling AE not allowed to query this tenant"), None
            return
        try:
            query = read_query(event)
            result = self.finder.find(query)
        except IdentifierError as exc:
            self._finish(event, "Find", start, IDENTIFIER_MISMATCH, error=str(exc))
            yield status(IDENTIFIER_MISMATCH, str(exc)), None
            return
        except OrthancError as exc:
            self._finish(event, "Find", start, FIND_OUT_OF_RESOURCES, error=str(exc))
            yield status(FIND_OUT_OF_RESOURCES, "archive unavailable, retry later"), None
            return
        cancelled = CancelWatch(event)
        direct = DirectAnswers.for_event(event)
        sent = direct.send(result.answers, cancelled) if direct else 0
        if direct is not None and direct.broken:
            self._finish(event, "Find", start, UNABLE_TO_PROCESS, matches=sent, error="connection lost")
            event.assoc.dul.event_queue.put("Evt17")  # what pynetdicom does when its own send fails
            return
        for answer in result.answers[sent:]:
            if cancelled():
                self._finish(event, "Find", start, CANCELLED, matches=sent, **self._audit_query(query))
                yield CANCELLED, None
                return
            sent += 1
            yield PENDING, build_answer(answer)
        final = FIND_OUT_OF_RESOURCES if result.truncated else 0x0000
        self._finish(
            event, "Find", start, final, matches=sent, truncated=result.truncated, **self._audit_query(query)
        )
        if result.truncated:
            yield status(FIND_OUT_OF_RESOURCES, "too many matches: refine the query"), None

    # --- C-MOVE and C-GET -----------------------------------------------------------

    def _resolve(self, event: evt.Event, operation: str, start: float) -> tuple[Query, list[InstanceRef]]:
        try:
            query = read_query(event)
            return query, self.retriever.resolve(query)
        except IdentifierError as exc:
            self._finish(event, operation, start, UNABLE_TO_PROCESS, error=str(exc))
            raise Refusal(str(exc)) from exc
        except OrthancError as exc:
            self._finish(event, operation, start, RETRIEVE_OUT_OF_RESOURCES, error=str(exc))
            raise Refusal(str(exc)) from exc

    def _datasets(self, event: evt.Event, refs: list[InstanceRef]) -> Iterator[tuple[int, Dataset | None]]:
        """Each instance read from Orthanc; one that cannot be read counts as a failed sub-operation."""
        for read in read_ahead(lambda ref: self.client.instance_file(ref.id), refs):
            if event.is_cancelled:
                yield CANCELLED, None
                return
            dataset: Dataset
            try:
                dataset = dcmread(BytesIO(read.result()))
            except Exception:  # OrthancError, or a file pydicom cannot read
                dataset = Dataset()
                dataset.SOPInstanceUID = "0"
            yield PENDING, dataset

    def on_move(self, event: evt.Event) -> Iterator[Any]:
        start = time.perf_counter()
        if not self._allowed(event, "Move"):
            raise Refusal("calling AE not allowed to retrieve from this tenant")
        destination = self.policy.move_destination(str(event.move_destination).strip())
        if destination is None:
            self._finish(event, "Move", start, 0xA801, destination=str(event.move_destination).strip())
            yield None, None
            return
        query, refs = self._resolve(event, "Move", start)
        yield (
            destination.host,
            destination.port,
            {
                "ae_title": destination.aet,
                "contexts": storage_contexts(refs) or None,
                "evt_handlers": TUNING_HANDLERS,
            },
        )
        self._audit_when_answered(
            event, "Move", start, refs, destination=destination.aet, **self._audit_query(query)
        )
        yield len(refs)
        yield from self._datasets(event, refs)

    def on_get(self, event: evt.Event) -> Iterator[Any]:
        start = time.perf_counter()
        if not self._allowed(event, "Get"):
            raise Refusal("calling AE not allowed to retrieve from this tenant")
        query, refs = self._resolve(event, "Get", start)
        self._audit_when_answered(event, "Get", start, refs, **self._audit_query(query))
        yield len(refs)
        yield from self._datasets(event, refs)

    def _audit_when_answered(
        self, event: evt.Event, operation: str, start: float, refs: list[InstanceRef], **audit: Any
    ) -> None:
        """The retrieve's audit line, with the status and counts of pynetdicom's final response
        (final_responses.py says why the handler cannot write it)."""

        def finish(rsp: Any) -> None:
            counts = suboperation_counts(rsp)
            self.telemetry.retrieve_suboperations(self.tenant.aet, operation, counts)
            self._finish(event, operation, start, int(rsp.Status), instances=len(refs), **counts, **audit)

        when_answered(event.assoc, finish)

    # --- C-STORE --------------------------------------------------------------------

    def on_store(self, event: evt.Event) -> int | Dataset:
        start = time.perf_counter()
        if not self._allowed(event, "Store"):
            return status(NOT_AUTHORIZED, "calling AE not allowed to store into this tenant")
        request: Any = event.request
        calling, peer = caller(event)
        try:
            keys = read_keys(event.dataset)
            meta = file_meta(keys.sop_class_uid, keys.sop_uid, event.context.transfer_syntax, calling)
        except Exception as exc:
            self._finish(event, "Store", start, CANNOT_UNDERSTAND, error=str(exc)[:200])
            return status(CANNOT_UNDERSTAND, "cannot read the data set")
        if keys.sop_class_uid != str(request.AffectedSOPClassUID) or keys.sop_uid != str(
            request.AffectedSOPInstanceUID
        ):
            self._finish(event, "Store", start, DATASET_MISMATCH, sop_instance_uid=keys.sop_uid)
            return status(DATASET_MISMATCH, "data set UIDs differ from the command's")
        outcome = self.storer.store(meta + request.DataSet.getvalue(), keys, calling, peer)
        self._finish(
            event,
            "Store",
            start,
            outcome.status,
            study_uid=keys.study_uid,
            series_uid=keys.series_uid,
            sop_instance_uid=keys.sop_uid,
            **({"patient_id": keys.patient_id} if self.audit_query_values else {}),
            orthanc_status=outcome.orthanc_status,
            reason=outcome.reason,
        )
        return status(outcome.status, outcome.reason) if outcome.status else 0x0000
