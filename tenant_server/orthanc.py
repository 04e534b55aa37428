"""Orthanc's REST API, as the tenant server uses it.

One keep-alive HTTP session per thread (pynetdicom runs each association in its own
thread), every call bounded by a timeout, every failure turned into ``OrthancError``
so DICOM handlers can answer a status instead of crashing.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import requests
from urllib3 import BaseHTTPResponse
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError, ReadTimeoutError
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
        self.url = connection.url
        self._auth = connection.auth
        self.timeout = timeout
        self._local = threading.local()
        self._observer = observer

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.auth = self._auth
            # Proxy and CA-bundle lookups from the environment on every call cost ~1 ms of
            # CPU each (profiled); the tenant server talks to one known Orthanc, not the web.
            session.trust_env = False
            adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=4, max_retries=RETRIES)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        return session

    def _call(self, method: str, path: str, route: str, **kwargs: Any) -> requests.Response:
        """One HTTP call; ``route`` is the path's shape (no IDs), for metrics."""
        start = time.perf_counter()
        failed = True
        try:
            reply = self._session().request(method, self.url + path, timeout=self.timeout, **kwargs)
            failed = reply.status_code >= 500
            return reply
        except requests.RequestException as exc:
            raise OrthancError(f"Orthanc unreachable: {type(exc).__name__}") from exc
        finally:
            if self._observer is not None:
                self._observer(f"{method} {route}", time.perf_counter() - start, failed)

    @staticmethod
    def _json(reply: requests.Response, what: str) -> Any:
        if reply.status_code != 200:
            raise OrthancError(f"{what}: HTTP {reply.status_code}", reply.status_code)
        try:
            return reply.json()
        except ValueError as exc:
            raise OrthancError(f"{what}: answer is not JSON") from exc

    def system(self) -> dict[str, Any]:
        result: dict[str, Any] = self._json(self._call("GET", "/system", "/system"), "GET /system")
        return result

    def find(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        reply = self._call("POST", "/tools/find", "/tools/find", json=body)
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
        reply = self._call("POST", "/tools/count-resources", "/tools/count-resources", json=body)
        return int(self._json(reply, "/tools/count-resources")["Count"])

    def store(self, data: bytes) -> dict[str, Any]:
        """POST one DICOM file; the answer's ``Status`` says what Orthanc did with it."""
        reply = self._call(
            "POST",
            "/instances",
            "/instances",
            data=data,
            headers={"Content-Type": "application/dicom"},
        )
        if reply.status_code != 200:
            raise OrthancError(f"POST /instances: HTTP {reply.status_code}", reply.status_code)
        result: dict[str, Any] = reply.json()
        return result

    def labels(self, level: str, resource: str) -> list[str] | None:
        """The resource's labels, or None when it does not exist."""
        route = LEVEL_ROUTES[level]
        reply = self._call("GET", f"/{route}/{resource}/labels", f"/{route}/{{id}}/labels")
        if reply.status_code == 404:
            return None
        result: list[str] = self._json(reply, f"GET /{route}/{{id}}/labels")
        return result

    def add_label(self, level: str, resource: str, label: str) -> None:
        route = LEVEL_ROUTES[level]
        reply = self._call("PUT", f"/{route}/{resource}/labels/{label}", f"/{route}/{{id}}/labels", data=b"")
        if reply.status_code != 200:
            raise OrthancError(f"PUT label on {level}: HTTP {reply.status_code}", reply.status_code)

    def delete(self, level: str, resource: str) -> None:
        route = LEVEL_ROUTES[level]
        reply = self._call("DELETE", f"/{route}/{resource}", f"/{route}/{{id}}")
        if reply.status_code not in (200, 404):
            raise OrthancError(f"DELETE {level}: HTTP {reply.status_code}", reply.status_code)

    def set_metadata(self, resource: str, name: str, value: str) -> bool:
        """Record instance metadata; False when Orthanc does not accept that name."""
        reply = self._call(
            "PUT",
            f"/instances/{resource}/metadata/{name}",
            "/instances/{id}/metadata",
            data=value.encode(),
        )
        return reply.status_code == 200

    def instance_file(self, resource: str) -> bytes:
        reply = self._call("GET", f"/instances/{resource}/file", "/instances/{id}/file")
        if reply.status_code != 200:
            raise OrthancError(f"GET instance file: HTTP {reply.status_code}", reply.status_code)
        return reply.content
