"""Run the tenant DICOM servers of one configuration in one process.

Each tenant gets its own pynetdicom AE (its AET, port, contexts and handlers); all share
one Orthanc client and one metrics registry.
"""

from __future__ import annotations

import copy
import logging
import socket
import ssl
import threading
import time
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, evt
from pynetdicom.presentation import PresentationContext
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer
from pynetdicom.utils import make_target

from tenant_server.audit import Audit
from tenant_server.config import Settings, TenantSettings, TlsSettings
from tenant_server.handlers import TenantHandlers
from tenant_server.orthanc import OrthancClient
from tenant_server.telemetry import Telemetry

log = logging.getLogger("tenant_server")

QUERY_RETRIEVE = (
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
)


def tls_context(tls: TlsSettings) -> ssl.SSLContext:
    """TLS 1.2+ server context; client certificates checked against the CA bundle if required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.certificate, tls.private_key)
    if tls.trusted_certificates:
        context.load_verify_locations(tls.trusted_certificates)
        context.verify_mode = ssl.CERT_REQUIRED if tls.require_client_certificate else ssl.CERT_OPTIONAL
    return context


def build_ae(tenant: TenantSettings, settings: Settings) -> AE:
    ae = AE(ae_title=tenant.aet)
    timeout = settings.dicom.scp_timeout
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.maximum_pdu_size = settings.dicom.maximum_pdu_length
    ae.maximum_associations = tenant.max_associations
    ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
    for sop_class in QUERY_RETRIEVE:
        ae.add_supported_context(sop_class)
    # SCP role for C-STORE in; accepting the requestor's SCP role is what lets C-GET send back.
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(
            str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES, scu_role=False, scp_role=True
        )
    return ae


class SupportedContexts(list[PresentationContext]):
    """The server's presentation contexts, copied for each association without new UIDs.

    pynetdicom deep-copies the supported contexts for every association it accepts. With
    every storage SOP class and transfer syntax that is thousands of UID objects, each
    re-validated against a regular expression: about 170 ms of CPU per association,
    measured at 4 associations per second. UIDs are immutable strings, so fresh context
    objects and fresh lists are copy enough (negotiation sets a context's result and roles).
    """

    def __deepcopy__(self, memo: dict[int, Any]) -> list[PresentationContext]:
        copies = []
        for context in self:
            clone = copy.copy(context)
            clone._transfer_syntax = list(context._transfer_syntax)
            copies.append(clone)
        return copies


class TenantAssociationServer(ThreadedAssociationServer):
    """pynetdicom's server with the TLS handshake moved off the accept loop, and audited.

    pynetdicom wraps each accepted socket in ``get_request``, on the one thread that
    accepts connections, with no timeout: a client that connects and never says hello
    stops the tenant from accepting anyone else, and a failed handshake vanishes without
    a trace. Here the handshake runs on the connection's own thread, bounded by
    ``DicomScpTimeout`` and by the number of handshakes in progress, and every failure is
    a security event in the audit log.
    """

    def __init__(self, *args: Any, audit: Audit, telemetry: Telemetry, **kwargs: Any) -> None:
        self.audit = audit
        self.telemetry = telemetry
        super().__init__(*args, **kwargs)
        self.contexts = SupportedContexts(self.contexts)
        self._handshakes = threading.BoundedSemaphore(max(1, self.ae.maximum_associations))

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        assert self.socket is not None
        client, address = self.socket.accept()
        return client, address

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is not None:
            request = self._handshake(request, client_address)
            if request is None:
                return
        super().process_request_thread(request, client_address)

    def _handshake(self, raw: socket.socket, address: Any) -> ssl.SSLSocket | None:
        assert self.ssl_context is not None
        peer = str(address[0])
        if not self._handshakes.acquire(blocking=False):
            self._tls_failed(raw, peer, "too many TLS handshakes in progress")
            return None
        try:
            raw.settimeout(self.ae.network_timeout)
            wrapped = self.ssl_context.wrap_socket(raw, server_side=True)
            return wrapped
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or type(exc).__name__
            self._tls_failed(raw, peer, str(reason))
            return None
        finally:
            self._handshakes.release()

    def _tls_failed(self, raw: socket.socket, peer: str, reason: str) -> None:
        raw.close()
        self.telemetry.tls_failure(self.audit.tenant)
        self.audit.event("tls-handshake-failed", security=True, peer=peer, reason=reason)


class AssociationLifecycle:
    """Audit lines pynetdicom's own decisions and an association's end need (see handlers.py)."""

    def __init__(self, audit: Audit, telemetry: Telemetry) -> None:
        self.audit = audit
        self.telemetry = telemetry

    def bindings(self) -> list[tuple[Any, Any]]:
        return [
            (evt.EVT_ESTABLISHED, self.on_established),
            (evt.EVT_REJECTED, self.on_rejected),
            (evt.EVT_CONN_CLOSE, self.on_closed),
        ]

    @staticmethod
    def _who(event: evt.Event) -> tuple[str, str]:
        requestor = event.assoc.requestor
        return str(requestor.ae_title).strip(), str(requestor.address)

    def on_established(self, event: evt.Event) -> None:
        event.assoc.tenant_started = time.monotonic()  # type: ignore[attr-defined]

    def on_rejected(self, event: evt.Event) -> None:
        """pynetdicom rejected the association itself (MaxAssociations reached)."""
        calling, peer = self._who(event)
        primitive: Any = event.assoc.acceptor.primitive
        codes = (getattr(primitive, "result", 0), getattr(primitive, "result_source", 0))
        reason = f"{codes[0] or 0:#04x}/{codes[1] or 0:#04x}/{getattr(primitive, 'diagnostic', 0) or 0:#04x}"
        self.telemetry.association_rejected(self.audit.tenant)
        self.audit.event("association-rejected", security=True, calling_aet=calling, peer=peer, reason=reason)

    def on_closed(self, event: evt.Event) -> None:
        assoc = event.assoc
        started = getattr(assoc, "tenant_started", None)
        if started is None:
            # Never established: a rejection is already logged. A connection that closed
            # before its A-ASSOCIATE-RQ (a TCP probe, a port scan) would otherwise keep its
            # thread, counted against MaxAssociations and the shutdown, waiting for the
            # request until DicomScpTimeout: wake it as that timeout would.
            queue: Any = assoc.dul.to_user_queue
            if assoc.is_acceptor and getattr(assoc.requestor, "primitive", None) is None and queue.empty():
                queue.put(None)
            return
        calling, peer = self._who(event)
        self.audit.event(
            "association-closed",
            calling_aet=calling,
            peer=peer,
            end="released" if event.assoc.is_released else "aborted",
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )


class TenantServers:
    def __init__(self, settings: Settings, telemetry: Telemetry | None = None) -> None:
        # pynetdicom's "standard" handlers format every PDU and DIMSE message for its debug
        # log (about 6 % of the CPU under load), which audit.configure_logging caps at WARNING.
        _config.LOG_HANDLER_LEVEL = "none"
        self.settings = settings
        self.telemetry = telemetry or Telemetry()
        self.client = OrthancClient(
            settings.orthanc, timeout=settings.dicom.scp_timeout, observer=self.telemetry.orthanc_call
        )
        self.servers: dict[str, ThreadedAssociationServer] = {}
        self._stopping = threading.Event()

    def start(self) -> None:
        """Bind every tenant's port, or none: a failure stops those already started."""
        try:
            for tenant in self.settings.servers:
                self.servers[tenant.aet] = self._start_one(tenant)
        except Exception:
            self.stop(grace=0)
            raise

    def _start_one(self, tenant: TenantSettings) -> ThreadedAssociationServer:
        ae = build_ae(tenant, self.settings)
        handlers = TenantHandlers(
            tenant, self.settings.dicom, self.client, self.telemetry, self.settings.audit_query_values
        )
        audit = Audit(tenant.aet)
        lifecycle = AssociationLifecycle(audit, self.telemetry)
        bindings: list[Any] = [*handlers.bindings(), *lifecycle.bindings()]
        try:
            context = tls_context(tenant.tls) if tenant.tls else None
        except (OSError, ssl.SSLError) as exc:
            raise RuntimeError(f'server "{tenant.aet}": cannot load its TLS files: {exc}') from exc
        try:
            server = ae.make_server(
                (self.settings.bind_address, tenant.port),
                evt_handlers=bindings,
                ssl_context=context,
                server_class=TenantAssociationServer,
                audit=audit,
                telemetry=self.telemetry,
            )
        except OSError as exc:
            raise RuntimeError(
                f'server "{tenant.aet}" cannot listen on port {tenant.port}: {exc.strerror}'
            ) from exc
        # What ae.start_server(block=False) does, with our server class.
        thread = threading.Thread(
            target=make_target(server.serve_forever), name=f"AcceptorServer-{tenant.aet}", daemon=True
        )
        thread.start()
        ae._servers.append(server)
        self.telemetry.track_open_associations(tenant.aet, lambda: len(ae.active_associations))
        log.info(
            "listening",
            extra={"fields": {"tenant": tenant.aet, "port": tenant.port, "tls": bool(tenant.tls)}},
        )
        return server

    @property
    def bound(self) -> bool:
        return len(self.servers) == len(self.settings.servers) and not self._stopping.is_set()

    def active_associations(self) -> int:
        return sum(len(server.ae.active_associations) for server in self.servers.values())

    def stop(self, grace: float | None = None) -> int:
        """Stop accepting, let running associations finish within the grace period, then abort.

        Returns how many associations were still open at the deadline and were aborted.
        """
        self._stopping.set()
        grace = self.settings.shutdown_grace_period if grace is None else grace
        for server in self.servers.values():
            server.shutdown()
        deadline = time.monotonic() + grace
        while self.active_associations() and time.monotonic() < deadline:
            time.sleep(0.1)
        aborted = 0
        for server in self.servers.values():
            for assoc in list(server.ae.active_associations):
                assoc.abort()
                aborted += 1
        self.servers.clear()
        return aborted
