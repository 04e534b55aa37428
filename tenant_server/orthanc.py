"""Orthanc's REST API, as the tenant server uses it.

Every call is bounded by a timeout and every failure becomes ``OrthancError``, so DICOM
handlers answer a status instead of crashing. Calls go through libcurl (``pycurl``): a
C-STORE into a new study makes six calls, and per call libcurl costs about 90 us of CPU
where urllib3 costs 270 us and ``http.client`` 150 us (measured against Orthanc 1.12.7
on loopback, docs/performance.md); libcurl also parses the answer without the GIL, which
the other associations' threads need meanwhile.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import pycurl

from tenant_server.config import OrthancConnection

POOL_SIZE = 64  # idle handles (each with its keep-alive connection) kept for reuse
# libcurl errors that mean Orthanc was not reached or closed the connection before answering:
# the call is repeated (a refusal after a short pause: Orthanc may be restarting). Every call
# the tenant server makes is safe to repeat: GET, label PUT and DELETE are idempotent, and a
# repeated POST /instances answers AlreadyStored, which the store logic handles. A timeout
# is never repeated: a hung Orthanc must fail the call within its timeout.
REFUSED = pycurl.E_COULDNT_CONNECT
CLOSED = (pycurl.E_GOT_NOTHING, pycurl.E_SEND_ERROR, pycurl.E_RECV_ERROR)
RETRIES = 3
RETRY_PAUSE = 0.05  # seconds, doubled at each refusal


LEVEL_ROUTES = {
    "Patient": "patients",
    "Study": "studies",
    "Series": "series",
    "Instance": "instances",
}


@dataclass(frozen=True)
class Reply:
    status: int
    data: bytes


class CurlPool:
    """libcurl handles for any thread to borrow, each keeping its keep-alive connection.

    pynetdicom runs each association in its own thread; a handle is used by one thread
    at a time (libcurl's rule), and returned handles keep their connections warm for the
    next association instead of closing with the thread.
    """

    def __init__(
        self, size: int, timeout: float, auth: tuple[str, str] | None, retries: int = RETRIES
    ) -> None:
        self.size = size
        self.retries = retries
        self.timeout_ms = max(1, int(timeout * 1000))
        self.userpwd = ":".join(auth) if auth else ""
        self.trust = ssl.get_default_verify_paths()  # the CAs Python's ssl would trust
        self._idle: list[pycurl.Curl] = []
        self._lock = threading.Lock()

    def perform(self, method: str, url: str, body: bytes | None, content_type: str) -> Reply:
        with self._lock:
            handle = self._idle.pop() if self._idle else pycurl.Curl()
        try:
            reply = self._perform(handle, method, url, body, content_type)
        except BaseException:
            handle.close()  # its connection is in an unknown state
            raise
        handle.reset()  # drops the body reference (an instance may be large) and all options
        with self._lock:
            kept = len(self._idle) < self.size
            if kept:
                self._idle.append(handle)
        if not kept:
            handle.close()
        return reply

    def _configure(
        self, handle: pycurl.Curl, method: str, url: str, body: bytes | None, content_type: str
    ) -> BytesIO:
        answer = BytesIO()
        handle.setopt(pycurl.URL, url)
        handle.setopt(pycurl.NOSIGNAL, 1)  # threads: no SIGALRM for timeouts
        # libcurl would follow http_proxy/HTTPS_PROXY from the environment (some platforms set
        # them in every pod): instances and PHI must go straight to Orthanc, never via a proxy.
        handle.setopt(pycurl.PROXY, "")
        handle.setopt(pycurl.TIMEOUT_MS, self.timeout_ms)
        if self.userpwd:
            handle.setopt(pycurl.HTTPAUTH, pycurl.HTTPAUTH_BASIC)
            handle.setopt(pycurl.USERPWD, self.userpwd)
        if url.startswith("https:"):
            if self.trust.cafile:
                handle.setopt(pycurl.CAINFO, self.trust.cafile)
            if self.trust.capath:
                handle.setopt(pycurl.CAPATH, self.trust.capath)
        # "Expect:" stops libcurl from waiting for a 100 Continue before sending a large body.
        headers = ["Expect:", *([f"Content-Type: {content_type}"] if content_type else [])]
        handle.setopt(pycurl.HTTPHEADER, headers)
        if body is None:
            handle.setopt(pycurl.HTTPGET, 1)
        else:
            handle.setopt(pycurl.POSTFIELDS, body)
        handle.setopt(pycurl.CUSTOMREQUEST, method)
        handle.setopt(pycurl.WRITEDATA, answer)
        return answer

    def _perform(
        self, handle: pycurl.Curl, method: str, url: str, body: bytes | None, content_type: str
    ) -> Reply:
        pause, attempts = RETRY_PAUSE, 0
        while True:
            answer = self._configure(handle, method, url, body, content_type)
            try:
                handle.perform()
                return Reply(int(handle.getinfo(pycurl.RESPONSE_CODE)), answer.getvalue())
            except pycurl.error as exc:
                code, message = exc.args[0], str(exc.args[-1])
                attempts += 1
                if attempts > self.retries or (code != REFUSED and code not in CLOSED):
                    raise OrthancError(f"Orthanc unreachable: {message}") from exc
                if code == REFUSED:
                    time.sleep(pause)
                    pause *= 2


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


def missing_features(system: Any) -> str | None:
    """Why this Orthanc (its ``GET /system``) cannot serve tenants, or None.

    Labels need Orthanc >= 1.12.0 and a database that stores them. Every search this server
    makes uses ``ResponseContent`` and ``ParentStudy``/``ParentSeries`` in ``/tools/find``,
    which Orthanc offers from 1.12.5 on databases with extended find (SQLite, the PostgreSQL
    index plugin from 7.0); elsewhere Orthanc ignores them and answers in another shape.
    """
    if not isinstance(system, dict):
        return "GET /system: unexpected answer"
    version = str(system.get("Version", "?"))
    if not system.get("HasLabels", False):
        return f"Orthanc {version}: its database has no labels (needs Orthanc >= 1.12)"
    if not (system.get("Capabilities") or {}).get("HasExtendedFind", False):
        return (
            f"Orthanc {version}: no extended /tools/find (ResponseContent, ParentStudy); needs Orthanc"
            " >= 1.12.5 with SQLite or an index plugin that supports it (PostgreSQL >= 7)"
        )
    return None


class OrthancClient:
    def __init__(
        self,
        connection: OrthancConnection,
        timeout: float = 30.0,
        observer: Callable[[str, float, bool], None] | None = None,
        retries: int = RETRIES,
    ) -> None:
        self.url = connection.url.rstrip("/")
        self.timeout = timeout
        self._observer = observer
        self._handles = CurlPool(POOL_SIZE, timeout, connection.auth, retries)

    def _call(
        self,
        method: str,
        path: str,
        route: str,
        body: bytes | None = None,
        content_type: str = "",
    ) -> Reply:
        """One HTTP call; ``route`` is the path's shape (no IDs), for metrics."""
        start = time.perf_counter()
        failed = True
        try:
            reply = self._handles.perform(method, self.url + path, body, content_type)
            failed = reply.status >= 500
            return reply
        finally:
            if self._observer is not None:
                self._observer(f"{method} {route}", time.perf_counter() - start, failed)

    def _post_json(self, path: str, body: dict[str, Any]) -> Reply:
        return self._call("POST", path, path, json.dumps(body).encode(), "application/json")

    @staticmethod
    def _json(reply: Reply, what: str) -> Any:
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
