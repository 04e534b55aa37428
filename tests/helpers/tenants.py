"""Fixtures that run our tenant servers in-process against the session Orthanc, and a
storage SCP that plays the C-MOVE destination."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from local_orthanc import OrthancHandle
from local_orthanc.server import free_port
from pydicom.dataset import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

from tenant_server.config import parse_settings
from tenant_server.server import TenantServers


@dataclass
class StorageScp:
    """A C-MOVE destination that keeps what it receives, with the AETs it was called with."""

    aet: str
    port: int
    received: list[Dataset] = field(default_factory=list)
    called_aets: list[str] = field(default_factory=list)
    calling_aets: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    status: int = 0x0000  # what it answers: e.g. 0xA700 for a destination that is full

    def on_store(self, event: evt.Event) -> int:
        with self.lock:
            self.received.append(event.dataset)
            self.called_aets.append(str(event.assoc.requestor.primitive.called_ae_title).strip())
            self.calling_aets.append(str(event.assoc.requestor.ae_title).strip())
        return self.status

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.called_aets.clear()
            self.calling_aets.clear()

    def sop_uids(self) -> set[str]:
        with self.lock:
            return {str(ds.SOPInstanceUID) for ds in self.received}


@contextmanager
def storage_scp(aet: str = "DEST") -> Iterator[StorageScp]:
    scp = StorageScp(aet, free_port())
    ae = AE(ae_title=aet)
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    server = ae.start_server(
        ("127.0.0.1", scp.port), block=False, evt_handlers=[(evt.EVT_C_STORE, scp.on_store)]
    )
    try:
        yield scp
    finally:
        server.shutdown()


def tenant_config(orthanc: OrthancHandle, servers: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """An Orthanc-style configuration for our tenant servers, pointing at the test Orthanc."""
    return {
        "Orthanc": {"Url": orthanc.url, "Username": orthanc.username, "Password": orthanc.password},
        "MultitenantDicom": {"Servers": servers},
        "TenantServer": {"HealthPort": 0, "BindAddress": "127.0.0.1"},
        **extra,
    }


@contextmanager
def run_tenants(config: dict[str, Any]) -> Iterator[TenantServers]:
    servers = TenantServers(parse_settings(config, env={}))
    servers.start()
    try:
        yield servers
    finally:
        servers.stop(grace=1)


@pytest.fixture(scope="session")
def move_destination() -> Iterator[StorageScp]:
    with storage_scp("DEST") as scp:
        yield scp


@pytest.fixture(scope="session")
def ours(orthanc: OrthancHandle, move_destination: StorageScp) -> Iterator[dict[str, int]]:
    """Our tenant servers OURS_A/OURS_B with the plugin tenants' labels: AET -> port."""
    ports = {"OURS_A": free_port(), "OURS_B": free_port()}
    config = tenant_config(
        orthanc,
        [
            {"AET": "OURS_A", "Port": ports["OURS_A"], "Labels": ["compat_a"]},
            {"AET": "OURS_B", "Port": ports["OURS_B"], "Labels": ["compat_b"]},
        ],
        DicomModalities={"dest": {"AET": "DEST", "Host": "127.0.0.1", "Port": move_destination.port}},
        DicomAlwaysAllowFind=True,
        DicomAlwaysAllowMove=True,
        DicomAlwaysAllowGet=True,
    )
    with run_tenants(config):
        yield ports
