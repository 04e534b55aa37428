"""Run the tenant DICOM servers of one configuration in one process.

Each tenant gets its own pynetdicom AE (its AET, port, contexts and handlers); all share
one Orthanc client and one metrics registry.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts
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


class TenantServers:
    def __init__(self, settings: Settings, telemetry: Telemetry | None = None) -> None:
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
        handlers = TenantHandlers(tenant, self.settings.dicom, self.client, self.telemetry)
        try:
            server = ae.start_server(
                (self.settings.bind_address, tenant.port),
                block=False,
                evt_handlers=handlers.bindings(),  # type: ignore[arg-type]
                ssl_context=tls_context(tenant.tls) if tenant.tls else None,
            )
        except OSError as exc:
            raise RuntimeError(
                f'server "{tenant.aet}" cannot listen on port {tenant.port}: {exc.strerror}'
            ) from exc
        assert server is not None
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

    def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let running associations finish within the grace period, then abort."""
        self._stopping.set()
        grace = self.settings.shutdown_grace_period if grace is None else grace
        for server in self.servers.values():
            server.shutdown()
        deadline = time.monotonic() + grace
        while self.active_associations() and time.monotonic() < deadline:
            time.sleep(0.1)
        for server in self.servers.values():
            for assoc in list(server.ae.active_associations):
                assoc.abort()
        self.servers.clear()
