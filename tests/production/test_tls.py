"""DICOM TLS: server certificate from files, mutual TLS against a CA bundle, TLS 1.2+ only."""

from __future__ import annotations

import logging
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from local_orthanc import OrthancHandle
from local_orthanc.server import free_port
from prometheus_client import generate_latest

from tenant_server.audit import AUDIT_LOGGER
from tenant_server.server import TenantServers
from tests.helpers.tenants import run_tenants, tenant_config
from tests.production.support import (
    DCMTK,
    Pki,
    associate,
    client_tls,
    echo,
    find,
    study_query,
    tls_context_for_old_protocol,
)


def tls_tenant(pki: Pki, port: int, label: str, mutual: bool = True) -> dict[str, Any]:
    tls: dict[str, Any] = {"Certificate": pki["tls.crt"], "PrivateKey": pki["tls.key"]}
    if mutual:
        tls.update(TrustedCertificates=pki["ca.crt"], RequireClientCertificate=True)
    return {"AET": "TLS", "Port": port, "Labels": [label], "Tls": tls}


@pytest.fixture
def mutual(orthanc: OrthancHandle, pki: Pki, label: str) -> Iterator[tuple[int, TenantServers]]:
    port = free_port()
    config = tenant_config(orthanc, [tls_tenant(pki, port, label)], DicomAlwaysAllowFind=True)
    with run_tenants(config) as servers:
        yield port, servers


def tls_failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == AUDIT_LOGGER and r.getMessage() == "tls-handshake-failed"]


def wait_for_failures(caplog: pytest.LogCaptureFixture, count: int) -> list[logging.LogRecord]:
    deadline = time.monotonic() + 5
    while len(tls_failures(caplog)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return tls_failures(caplog)


def test_client_with_a_valid_certificate(mutual: tuple[int, TenantServers], pki: Pki) -> None:
    port, _ = mutual
    assoc = associate(port, "TLS", tls=client_tls(pki))
    assert assoc.is_established
    assert echo(assoc) == 0
    assert find(assoc, study_query("1.2.3.4.5.404")) == (0, [])
    assoc.release()


@pytest.mark.parametrize("cert", [None, "rogue"], ids=["no-certificate", "untrusted-certificate"])
def test_client_without_a_valid_certificate_is_refused(
    mutual: tuple[int, TenantServers], pki: Pki, cert: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    port, servers = mutual
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    assoc = associate(port, "TLS", tls=client_tls(pki, cert=cert))
    assert not assoc.is_established
    failures = wait_for_failures(caplog, 1)
    assert failures and failures[0].levelno == logging.WARNING
    fields = failures[0].fields  # type: ignore[attr-defined]
    assert fields["tenant"] == "TLS" and fields["peer"] == "127.0.0.1" and fields["reason"]
    metrics = generate_latest(servers.telemetry.registry).decode()
    assert 'tenant_tls_handshake_failures_total{tenant="TLS"} 1.0' in metrics


def test_only_the_configured_ca_is_trusted_for_client_certificates(
    orthanc: OrthancHandle, pki: Pki, label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The system's CA store (here made of the rogue CA) must not vouch for DICOM clients:
    mutual TLS trusts ``TrustedCertificates`` alone, or any publicly-signed client would do."""
    monkeypatch.setenv("SSL_CERT_FILE", pki["rogue-ca.pem"])
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    port = free_port()
    config = tenant_config(orthanc, [tls_tenant(pki, port, label)], DicomAlwaysAllowFind=True)
    with run_tenants(config):
        rogue = associate(port, "TLS", tls=client_tls(pki, cert="rogue"))
        assert not rogue.is_established
        trusted = associate(port, "TLS", tls=client_tls(pki))
        assert trusted.is_established
        trusted.release()


def test_plain_dicom_on_the_tls_port_is_refused(
    mutual: tuple[int, TenantServers], caplog: pytest.LogCaptureFixture
) -> None:
    port, _ = mutual
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    assoc = associate(port, "TLS")
    assert not assoc.is_established
    assert wait_for_failures(caplog, 1)


def test_tls_1_1_is_refused(mutual: tuple[int, TenantServers], caplog: pytest.LogCaptureFixture) -> None:
    port, _ = mutual
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    context = tls_context_for_old_protocol()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        pytest.raises(ssl.SSLError) as refused,
    ):
        context.wrap_socket(raw, server_hostname="localhost")
    if "NO_PROTOCOLS_AVAILABLE" in str(refused.value):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1 as a client")
    failures = wait_for_failures(caplog, 1)
    assert failures, refused.value
    assert "PROTOCOL" in failures[0].fields["reason"].upper()  # type: ignore[attr-defined]


def test_a_silent_client_does_not_block_the_others(mutual: tuple[int, TenantServers], pki: Pki) -> None:
    """pynetdicom handshakes on its accept loop: one idle TCP connection would stop the tenant."""
    port, _ = mutual
    with socket.create_connection(("127.0.0.1", port)):
        time.sleep(0.3)
        start = time.monotonic()
        assoc = associate(port, "TLS", tls=client_tls(pki))
        assert assoc.is_established
        assoc.release()
        assert time.monotonic() - start < 5


def test_server_only_tls(orthanc: OrthancHandle, pki: Pki, label: str) -> None:
    port = free_port()
    config = tenant_config(orthanc, [tls_tenant(pki, port, label, mutual=False)])
    with run_tenants(config):
        assoc = associate(port, "TLS", tls=client_tls(pki, cert=None))
        assert assoc.is_established
        assert echo(assoc) == 0
        assoc.release()


def test_missing_certificate_file_stops_the_start(orthanc: OrthancHandle, pki: Pki, label: str) -> None:
    tenant = tls_tenant(pki, free_port(), label)
    tenant["Tls"]["Certificate"] = pki["missing.crt"]
    with pytest.raises(RuntimeError, match="TLS"), run_tenants(tenant_config(orthanc, [tenant])):
        pass


def dcmtk(tool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DCMTK[tool], *args], capture_output=True, text=True, timeout=60)


def test_dcmtk_echoscu_and_findscu_with_tls(mutual: tuple[int, TenantServers], pki: Pki) -> None:
    port, _ = mutual
    tls = ["+tls", pki["client.key"], pki["client.crt"], "+cf", pki["ca.crt"]]
    echo = dcmtk("echoscu", *tls, "-aet", "MODALITY", "-aec", "TLS", "127.0.0.1", str(port))
    assert echo.returncode == 0, echo.stdout + echo.stderr
    found = dcmtk(
        "findscu", *tls, "-S", "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=1.2.3.404",
        "-aet", "MODALITY", "-aec", "TLS", "127.0.0.1", str(port),
    )  # fmt: skip
    assert found.returncode == 0, found.stdout + found.stderr
    anonymous = dcmtk("echoscu", "+tla", "+cf", pki["ca.crt"], "-aec", "TLS", "127.0.0.1", str(port))
    assert anonymous.returncode != 0
    plain = dcmtk("echoscu", "-aec", "TLS", "127.0.0.1", str(port))
    assert plain.returncode != 0
