"""Liveness, readiness and Prometheus metrics on the health port."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
from local_orthanc import ExternalOrthanc, OrthancHandle
from local_orthanc.server import free_port

from tenant_server.config import parse_settings
from tenant_server.health import start_health_server
from tenant_server.orthanc import missing_features
from tenant_server.server import TenantServers
from tests.helpers.faults import fault_proxy
from tests.helpers.tenants import tenant_config
from tests.production.support import Pki, associate, echo, find, study_query


@contextmanager
def serving(config: dict[str, Any]) -> Iterator[tuple[str, TenantServers]]:
    servers = TenantServers(parse_settings(config, env={}))
    servers.start()
    port = free_port()
    httpd = start_health_server(servers, "127.0.0.1", port)
    try:
        yield f"http://127.0.0.1:{port}", servers
    finally:
        httpd.shutdown()
        httpd.server_close()
        servers.stop(grace=1)


def one_tenant(orthanc: OrthancHandle, label: str) -> tuple[dict[str, Any], int]:
    port = free_port()
    config = tenant_config(
        orthanc, [{"AET": "HEALTH", "Port": port, "Labels": [label]}], DicomAlwaysAllowFind=True
    )
    return config, port


def test_probes_and_metrics_with_orthanc_up(orthanc: OrthancHandle, label: str) -> None:
    config, port = one_tenant(orthanc, label)
    with serving(config) as (url, servers):
        assert requests.get(url + "/livez", timeout=5).status_code == 200
        ready = requests.get(url + "/readyz", timeout=10)
        assert (ready.status_code, ready.text.strip()) == (200, "ready")
        assert requests.get(url + "/nothing", timeout=5).status_code == 404

        assoc = associate(port, "HEALTH")
        assert echo(assoc) == 0
        assert find(assoc, study_query("1.2.3.404"))[0] == 0
        assoc.release()
        time.sleep(0.2)

        metrics = requests.get(url + "/metrics", timeout=5)
        assert metrics.headers["Content-Type"].startswith("text/plain")
        text = metrics.text
        for expected in (
            'tenant_associations_total{tenant="HEALTH"} 1.0',
            'tenant_associations_open{tenant="HEALTH"} 0.0',
            'tenant_operations_total{operation="Echo",outcome="success",tenant="HEALTH"} 1.0',
            'tenant_operations_total{operation="Find",outcome="success",tenant="HEALTH"} 1.0',
            'tenant_operation_seconds_bucket{le="+Inf",operation="Find",tenant="HEALTH"} 1.0',
            'tenant_orthanc_request_seconds_count{route="POST /tools/find"}',
            'tenant_orthanc_request_seconds_count{route="GET /system"}',
            "# TYPE tenant_associations_rejected_total counter",
            "# TYPE tenant_tls_handshake_failures_total counter",
            "# TYPE tenant_orthanc_errors_total counter",
        ):
            assert expected in text, expected

        servers.stop(grace=0)  # what SIGTERM does first: the ports close, readiness goes
        time.sleep(READY_CACHE)
        stopping = requests.get(url + "/readyz", timeout=10)
        assert (stopping.status_code, stopping.text.strip()) == (503, "DICOM ports not bound")
        assert requests.get(url + "/livez", timeout=5).status_code == 200


READY_CACHE = 2.1


def test_not_ready_with_a_wrong_password(orthanc: OrthancHandle, label: str) -> None:
    config, _ = one_tenant(orthanc, label)
    config["Orthanc"]["Password"] = "wrong"
    with serving(config) as (url, _servers):
        reply = requests.get(url + "/readyz", timeout=10)
        assert reply.status_code == 503
        assert "401" in reply.text
        assert requests.get(url + "/livez", timeout=5).status_code == 200


def test_not_ready_when_orthanc_is_unreachable(label: str) -> None:
    config, _ = one_tenant(ExternalOrthanc(f"http://127.0.0.1:{free_port()}", "u", "p"), label)
    with serving(config) as (url, _servers):
        reply = requests.get(url + "/readyz", timeout=10)
        assert reply.status_code == 503
        assert "unreachable" in reply.text
        metrics = requests.get(url + "/metrics", timeout=5).text
        assert 'tenant_orthanc_errors_total{route="GET /system"} 1.0' in metrics


def test_readiness_answers_quickly_when_orthanc_hangs(label: str) -> None:
    """A probe must not wait DicomScpTimeout (here 60 s) for an Orthanc that accepts and says nothing."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        config, _ = one_tenant(
            ExternalOrthanc(f"http://127.0.0.1:{silent.getsockname()[1]}", "u", "p"), label
        )
        config["DicomScpTimeout"] = 60
        with serving(config) as (url, _servers):
            start = time.monotonic()
            reply = requests.get(url + "/readyz", timeout=30)
            assert reply.status_code == 503
            assert time.monotonic() - start < 6


def test_https_orthanc_with_a_private_ca_named_by_ssl_cert_file(
    orthanc: OrthancHandle, pki: Pki, label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Orthanc behind TLS with the hospital's own CA: not trusted from the system's CA store;
    trusted by readiness and by the DICOM side alike once ``SSL_CERT_FILE`` names that CA."""
    with fault_proxy(orthanc.url, tls=(pki["tls.crt"], pki["tls.key"])) as front:
        config, port = one_tenant(ExternalOrthanc(front.url, orthanc.username, orthanc.password), label)
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        with serving(config) as (url, _servers):
            reply = requests.get(url + "/readyz", timeout=10)
            assert reply.status_code == 503
            assert "certificate" in reply.text.lower()
            assoc = associate(port, "HEALTH")
            assert find(assoc, study_query("1.2.3.404"))[0] == 0xA700  # Orthanc not reached
            assoc.release()
        monkeypatch.setenv("SSL_CERT_FILE", pki["ca.crt"])
        with serving(config) as (url, _servers):
            reply = requests.get(url + "/readyz", timeout=10)
            assert (reply.status_code, reply.text.strip()) == (200, "ready")
            assoc = associate(port, "HEALTH")
            assert find(assoc, study_query("1.2.3.404"))[0] == 0x0000
            assoc.release()


def test_proxy_variables_of_the_pod_are_not_used_for_orthanc(
    orthanc: OrthancHandle, label: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Platforms put HTTP(S)_PROXY in every pod; instances must still go straight to Orthanc."""
    dead = f"http://127.0.0.1:{free_port()}"
    for variable in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(variable, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    config, port = one_tenant(orthanc, label)
    with serving(config) as (url, _servers):
        reply = requests.get(url + "/readyz", timeout=10, proxies={"http": ""})
        assert (reply.status_code, reply.text.strip()) == (200, "ready")
        assoc = associate(port, "HEALTH")
        assert find(assoc, study_query("1.2.3.404"))[0] == 0x0000
        assoc.release()


def test_what_an_orthanc_must_offer(orthanc: OrthancHandle) -> None:
    """Judged on the real Orthanc's /system, then on the same answer as older Orthancs or
    databases give it (no labels before 1.12; no extended find before 1.12.5 or on a
    PostgreSQL index plugin before 7)."""
    system = requests.get(
        orthanc.url + "/system", auth=(orthanc.username, orthanc.password), timeout=10
    ).json()
    assert missing_features(system) is None
    older = {**system, "Version": "1.12.4"}
    del older["Capabilities"]
    assert "needs Orthanc >= 1.12.5" in (missing_features(older) or "")
    no_extended_find = {**system, "Capabilities": {"HasExtendedFind": False}}
    assert "PostgreSQL >= 7" in (missing_features(no_extended_find) or "")
    unlabelled = {**system, "Version": "1.11.3", "HasLabels": False}
    assert (
        missing_features(unlabelled) == "Orthanc 1.11.3: its database has no labels (needs Orthanc >= 1.12)"
    )
