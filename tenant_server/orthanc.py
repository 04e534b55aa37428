"""Orthanc's REST API, as the tenant server uses it.

One thread-safe pool of keep-alive connections (pynetdicom runs each association in its
own thread), every call bounded by a timeout, every failure turned into ``OrthancError``
so DICOM handlers can answer a status instead of crashing.

urllib3 directly rather than ``requests``: a C-STORE makes up to six calls, and
``requests`` costs 0.43 ms of CPU per call against urllib3's 0.17 ms (measured on a label
PUT, docs/performance.md) for features the server does not use (cookies, environment
proxies, redirects).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import urllib3
from urllib3 import BaseHTTPResponse
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.util.retry import Retry

from tenant_server.config import OrthancConnection


class DisconnectRetry(Retry):
    """Repeat a call that met a connection Orthanc closed, never one that timed out.

    Orthanc closes idle keep-alive connections; a call meeting one closed under it failed
    (seen under load as "ConnectionError"). Every call the tenant server makes is safe to
    repeat: GET, label PUT and DELETE are idempotent, and a repeated POST /instances answers
    AlreadyStored, which the store logic handles. A hung Orthanc must still fail the call
    within its timeout, so timeouts are raised at once.
    """

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> DisconnectRetry:
        timed_out = isinstance(error, TimeoutError | ReadTimeoutError | ConnectTimeoutError)
        if timed_out and not isinstance(error, NewConnectionError):  # refused is quick: retried
            raise MaxRetryError(_pool, url, error)  # type: ignore[arg-type]
        return super().increment(method, url, response, error, _pool, _stacktrace)


POOL_SIZE = 64
RETRIES = DisconnectRetry(
    total=3, connect=3, read=2, status=0, other=0, backoff_factor=0.05, allowed_methods=None
)

LEVEL_ROUTES = {
    "Patient": "patients",
    "Study": "studies",
    "Series": "series",
    "Instance": "instances",
}


class OrthancError(Exception):
    """Orthanc could not be reached or refused the call."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def orthanc_id(*uids: str) -> str:
    """Orthanc's resource ID: SHA-1 of ``PatientID|StudyUID|SeriesUID|SOPUID`` (as many as given).

    Orthanc derives IDs this way (DicomInstanceHasher), so an instance's would-be parents
    can be checked before it is stored.
    """
    digest = hashlib.sha1("|".join(uids).encode("utf-8")).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


class OrthancClient:
    def __init__(
        self,
        connection: OrthancConnection,
        timeout: float = 30.0,
        observer: Callable[[str, float, bool], None] | None = None,
    ) -> None:
        self.url = connection.url.rstrip("/")
        self.timeout = timeout
        self._observer = observer
        headers: dict[str, str] = {}
        if connection.auth:
            headers.update(urllib3.make_headers(basic_auth=":".join(connection.auth)))
        # One pool per process, as large as the associations that may call at once.
        self._http = urllib3.PoolManager(
            maxsize=POOL_SIZE, block=False, headers=headers, retries=RETRIES, timeout=timeout
        )

    def _call(
        self,
        method: str,
        path: str,
        route: str,
        body: bytes | None = None,
        content_type: str = "",
    ) -> BaseHTTPResponse:
        """One HTTP call; ``route`` is the path's shape (no IDs), for metrics."""
        start = time.perf_counter()
        failed = True
        try:
            reply = self._http.request(
                method,
                self.url + path,
                body=body,
                headers={**self._http.headers, "Content-Type": content_type} if content_type else None,
            )
            failed = reply.status >= 500
            return reply
        except HTTPError as exc:
            raise OrthancError(f"Orthanc unreachable: {type(exc).__name__}") from exc
        finally:
            if self._observer is not None:
                self._observer(f"{method} {route}", time.perf_counter() - start, failed)

    def _post_json(self, path: str, body: dict[str, Any]) -> BaseHTTPResponse:
        return self._call("POST", path, path, json.dumps(body).encode(), "application/json")

    @staticmethod
    def _json(reply: BaseHTTPResponse, what: str) -> Any:
        if reply.status != 200:
            raise OrthancError(f"{what}: HTTP {reply.status}", reply.status)
        try:
            return json.loads(reply.data)
        except ValueError as exc:
            raise OrthancError(f"{what}: answer is not JSON") from exc

    def system(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json(self._call("GET", "/system", "/system"), "GET /system")
        return result

    def find(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        reply = self._post_json("/tools/find", body)
        result = self._json(reply, "/tools/find")
        if not isinstance(result, list):
            raise OrthancError("/tools/find: answer is not a list")
        return result

    def labels_in_use(self) -> list[str]:
        """Every label present in the database (``/tools/labels``)."""
        result: list[str] = self._json(
            self._call("GET", "/tools/labels", "/tools/labels"), "GET /tools/labels"
        )
        return result

    def count(self, body: dict[str, Any]) -> int:
        reply = self._post_json("/tools/count-resources", body)
        return int(self._json(reply, "/tools/count-resources")["Count"])

    def store(self, data: bytes) -> dict[str, Any]:
        """POST one DICOM file; the answer's ``Status`` says what Orthanc did with it."""
        reply = self._call("POST", "/instances", "/instances", data, "application/dicom")
        result: dict[str, Any] = self._json(reply, "POST /instances")
        return result

    def statistics(self, level: str, resource: str) -> dict[str, Any] | None:
        """A resource's ``/statistics`` (counts, sizes), or None when it does not exist.

        Orthanc 1.12.7 answers it in constant time, while reading a resource
        (``GET /studies/{id}``, its labels, a 404 for an absent one) grows with the archive
        (13 ms at 50,000 studies on SQLite, docs/performance.md): the store path asks it
        whenever it only needs to know whether something exists or how much it holds.
        """
        route = LEVEL_ROUTES[level]
        reply = self._call("GET", f"/{route}/{resource}/statistics", f"/{route}/{{id}}/statistics")
        if reply.status == 404:
            return None
        result: dict[str, Any] = self._json(reply, f"GET /{route}/{{id}}/statistics")
        return result

    def exists(self, level: str, resource: str) -> bool:
        return self.statistics(level, resource) is not None

    def labels(self, level: str, resource: str) -> list[str] | None:
        """The resource's labels, or None when it does not exist."""
        route = LEVEL_ROUTES[level]
        reply = self._call("GET", f"/{route}/{resource}/labels", f"/{route}/{{id}}/labels")
        if reply.status == 404:
            return None
        result: list[str] = self._json(reply, f"GET /{route}/{{id}}/labels")
        return result

    def add_label(self, level: str, resource: str, label: str) -> None:
        route = LEVEL_ROUTES[level]
        reply = self._call("PUT", f"/{route}/{resource}/labels/{label}", f"/{route}/{{id}}/labels", b"")
        if reply.status != 200:
            raise OrthancError(f"PUT label on {level}: HTTP {reply.status}", reply.status)

    def remove_label(self, level: str, resource: str, label: str) -> None:
        route = LEVEL_ROUTES[level]
        reply = self._call("DELETE", f"/{route}/{resource}/labels/{label}", f"/{route}/{{id}}/labels")
        if reply.status not in (200, 404):
            raise OrthancError(f"DELETE label on {level}: HTTP {reply.status}", reply.status)

    def delete(self, level: str, resource: str) -> None:
        route = LEVEL_ROUTES[level]
        reply = self._call("DELETE", f"/{route}/{resource}", f"/{route}/{{id}}")
        if reply.status not in (200, 404):
            raise OrthancError(f"DELETE {level}: HTTP {reply.status}", reply.status)

    def set_metadata(self, resource: str, name: str, value: str) -> bool:
        """Record instance metadata; False when Orthanc does not accept that name."""
        reply = self._call(
            "PUT",
            f"/instances/{resource}/metadata/{name}",
            "/instances/{id}/metadata",
            value.encode(),
        )
        return reply.status == 200

    def instance_file(self, resource: str) -> bytes:
        reply = self._call("GET", f"/instances/{resource}/file", "/instances/{id}/file")
        if reply.status != 200:
            raise OrthancError(f"GET instance file: HTTP {reply.status}", reply.status)
        return bytes(reply.data)
