"""Liveness, readiness and Prometheus metrics over HTTP, on a port of their own."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tenant_server.orthanc import OrthancClient, OrthancError, missing_features
from tenant_server.server import TenantServers

READY_CACHE_SECONDS = 2.0
READY_TIMEOUT_SECONDS = 2.0  # under the readiness probe's 3 s timeout, whatever DicomScpTimeout is


class Readiness:
    """Orthanc reachable with our credentials and offering what the server uses (labels, the
    extended ``/tools/find``), and every port bound.

    One call with its own short timeout and no retries (the DICOM side's Orthanc client
    waits DicomScpTimeout and retries): a probe must answer before the kubelet gives up on
    it. It goes through the same client as the DICOM side, so it trusts the same CAs for an
    ``https://`` Orthanc. Checks are serialised and cached.
    """

    def __init__(self, servers: TenantServers) -> None:
        self.servers = servers
        self._client = OrthancClient(
            servers.settings.orthanc,
            timeout=READY_TIMEOUT_SECONDS,
            observer=servers.telemetry.orthanc_call,
            retries=0,
        )
        self._checked = 0.0
        self._orthanc_ok = False
        self._reason = "not checked yet"
        self._lock = threading.Lock()

    def check(self) -> tuple[bool, str]:
        with self._lock:
            if time.monotonic() - self._checked > READY_CACHE_SECONDS:
                self._orthanc_ok, self._reason = self._check_orthanc()
                self._checked = time.monotonic()
            if not self.servers.bound:
                return False, "DICOM ports not bound"
            return self._orthanc_ok, self._reason

    def _check_orthanc(self) -> tuple[bool, str]:
        try:
            system = self._client.system()
        except OrthancError as exc:
            return False, str(exc)
        missing = missing_features(system)
        return (False, missing) if missing else (True, "ready")


def start_health_server(servers: TenantServers, host: str, port: int) -> ThreadingHTTPServer:
    readiness = Readiness(servers)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/livez":
                self._reply(200, b"ok\n", "text/plain")
            elif self.path == "/readyz":
                ok, reason = readiness.check()
                self._reply(200 if ok else 503, (reason + "\n").encode(), "text/plain")
            elif self.path == "/metrics":
                self._reply(200, generate_latest(servers.telemetry.registry), CONTENT_TYPE_LATEST)
            else:
                self._reply(404, b"not found\n", "text/plain")

        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None  # probes every few seconds would drown the audit log

    httpd = ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, name="health", daemon=True).start()
    return httpd
