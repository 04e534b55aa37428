"""A switchable fault proxy in front of the real Orthanc.

It forwards every request unchanged, except when told to fail: "down" answers 503 to
everything, "refuse-labels" answers 500 to label PUTs only, "refuse-labels-and-deletes" to
label PUTs and DELETEs (an outage that starts right after an instance was stored).
``delay`` slows every forwarded request down (an Orthanc busy with other work), and
``method_delays`` requests of one method (e.g. {"POST": 0.5}: stores land late). It injects failures into a
real Orthanc's traffic; it never imitates Orthanc's answers. With ``tls`` (certificate and
key files) it serves HTTPS, as a TLS-terminating front of Orthanc would.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from local_orthanc.server import free_port


class FaultProxy:
    def __init__(self, target: str, scheme: str = "http") -> None:
        self.target = target.rstrip("/")
        self.scheme = scheme
        self.mode = "pass"
        self.delay = 0.0
        self.method_delays: dict[str, float] = {}
        self.port = free_port()
        self.session = requests.Session()

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def fails(self, method: str, path: str) -> bool:
        if self.mode == "down":
            return True
        if self.mode == "refuse-labels-and-deletes" and method == "DELETE":
            return True
        return self.mode.startswith("refuse-labels") and method == "PUT" and "/labels/" in path


@contextmanager
def fault_proxy(target: str, tls: tuple[str, str] | None = None) -> Iterator[FaultProxy]:
    proxy = FaultProxy(target, "https" if tls else "http")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if proxy.fails(self.command, self.path):
                self._reply(503 if proxy.mode == "down" else 500, b"injected fault", "text/plain")
                return
            time.sleep(proxy.delay + proxy.method_delays.get(self.command, 0.0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            upstream = proxy.session.request(
                self.command, proxy.target + self.path, data=body, headers=headers, timeout=60
            )
            self._reply(upstream.status_code, upstream.content, upstream.headers.get("Content-Type", ""))

        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _forward

        def log_message(self, format: str, *args: object) -> None:
            return None

    httpd = ThreadingHTTPServer(("127.0.0.1", proxy.port), Handler)
    httpd.daemon_threads = True
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        httpd.shutdown()
        httpd.server_close()
