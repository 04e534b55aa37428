"""What the production tests share: a tenant server run as the real command, a test PKI,
an HTTP-level fault proxy in front of Orthanc, and small DICOM client helpers.

The server runs as ``python -m tenant_server --config FILE`` (what the container runs),
so signals, stdout and the process's threads, descriptors and memory are the real ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from local_orthanc import OrthancHandle
from local_orthanc.server import free_port
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from tenant_server.orthanc import orthanc_id
from tenant_server.sockets import calm
from tests.helpers.tenants import StorageScp

REPO = Path(__file__).resolve().parents[2]
LONG = os.environ.get("MTDICOM_LONG") == "1"
DCMTK = {name: f"/usr/bin/{name}" for name in ("echoscu", "findscu", "storescu")}


def long_or(short: Any, long: Any) -> Any:
    """The CI-sized value, or the long one when ``MTDICOM_LONG=1``."""
    return long if LONG else short


# --- the tenant server as a process --------------------------------------------------------


def process_stats(pid: int, pooled_port: int | None = None) -> dict[str, int]:
    """Threads, open descriptors and resident memory (kB) of a process, from /proc.

    With ``pooled_port``, connections to that port (the Orthanc client's keep-alive pool,
    bounded by its size) are counted apart, as ``pooled``, and not in ``fds``; so are the
    eventfds, as ``wakeups``: libcurl keeps two with each idle handle of that pool.
    """
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    links = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed since listed
            links.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    pooled = _sockets_to(pid, pooled_port) if pooled_port else set()
    in_pool = sum(1 for link in links if link in pooled)
    wakeups = sum(1 for link in links if link == "anon_inode:[eventfd]") if pooled_port else 0
    return {
        "threads": int(fields["Threads"].strip()),
        "fds": len(links) - in_pool - wakeups,
        "pooled": in_pool,
        "wakeups": wakeups,
        "rss_kb": int(fields["VmRSS"].strip().split()[0]),
    }


def _sockets_to(pid: int, port: int) -> set[str]:
    """``socket:[inode]`` links of the TCP connections whose remote end is ``port``."""
    found = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            columns = line.split()
            if int(columns[2].rsplit(":", 1)[1], 16) == port:
                found.add(f"socket:[{columns[9]}]")
    return found


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout} s")


@dataclass
class ServerProcess:
    """``tenant-server --config`` in a subprocess; stdout (the audit log) kept in a file."""

    config: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tenant-server-")))
    process: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.json"

    @property
    def stdout_path(self) -> Path:
        return self.workdir / "stdout.log"

    @property
    def stderr_path(self) -> Path:
        return self.workdir / "stderr.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def ports(self) -> list[int]:
        return [int(s["Port"]) for s in self.config["MultitenantDicom"]["Servers"]]

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.config['TenantServer']['HealthPort']}"

    def start(self, timeout: float = 30.0) -> ServerProcess:
        self.config_path.write_text(json.dumps(self.config, indent=2))
        # No PYTHONPATH to the work tree: its operator/ folder would shadow the standard library.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env.pop("PYTHONPATH", None)
        for key in ("ORTHANC_URL", "ORTHANC_USERNAME", "ORTHANC_PASSWORD"):
            if key not in self.env:
                env.pop(key, None)
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tenant_server", "--config", str(self.config_path)],
                stdout=out,
                stderr=err,
                env=env,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + timeout
        for port in self.ports:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"tenant server exited with {self.process.returncode}:\n{self.output()}"
                    )
                try:
                    wait_port(port, timeout=0.5)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise
        return self

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace") + self.stderr_path.read_text(errors="replace")

    def lines(self) -> list[dict[str, Any]]:
        """Every JSON line the server wrote on stdout (anything else fails the test)."""
        text = self.stdout_path.read_text(errors="replace")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def events(self, name: str) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == name]

    def wait_event(self, name: str, count: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.events(name)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def stats(self) -> dict[str, int]:
        return process_stats(self.pid, urlsplit(self.config["Orthanc"]["Url"]).port)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def terminate(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@contextlib.contextmanager
def server_process(config: dict[str, Any], env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """A running server; its folder (config and output) is removed after a passing test,
    kept after a failure or with ``MTDICOM_KEEP_LOGS=1``."""
    server = ServerProcess(config, env or {}).start()
    failed = True
    try:
        yield server
        failed = False
    finally:
        server.stop()
        if failed or os.environ.get("MTDICOM_KEEP_LOGS"):
            print(f"\ntenant server output kept in {server.workdir}")
        else:
            shutil.rmtree(server.workdir, ignore_errors=True)


def process_config(
    orthanc: OrthancHandle,
    servers: list[dict[str, Any]],
    health: bool = True,
    orthanc_url: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """An Orthanc-style configuration for a server process on loopback."""
    return {
        "Orthanc": {
            "Url": orthanc_url or orthanc.url,
            "Username": orthanc.username,
            "Password": orthanc.password,
        },
        "MultitenantDicom": {"Servers": servers},
        "TenantServer": {
            "HealthPort": free_port() if health else 0,
            "BindAddress": "127.0.0.1",
            "ShutdownGracePeriod": 20,
        },
        **extra,
    }


# --- a test PKI (openssl CLI) --------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    folder: Path

    def __getitem__(self, name: str) -> str:
        return str(self.folder / name)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(folder: Path) -> Pki:
    """A CA with a server and a client certificate, and a rogue CA with its own client.

    Layout as the Kubernetes TLS Secret mounts it: ``tls.crt``, ``tls.key``, ``ca.crt``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for ca in ("ca", "rogue-ca"):
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN=test {ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=folder,
        )  # fmt: skip
    (folder / "ca.crt").write_bytes((folder / "ca.pem").read_bytes())
    leaves = {
        "tls": (
            "ca",
            "/CN=localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth",
        ),
        "client": ("ca", "/CN=MODALITY", "extendedKeyUsage=clientAuth"),
        "rogue": ("rogue-ca", "/CN=MODALITY", "extendedKeyUsage=clientAuth"),
    }
    for name, (ca, subject, extensions) in leaves.items():
        (folder / f"{name}.ext").write_text(extensions + "\n")
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
            "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=folder,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt",
            cwd=folder,
        )  # fmt: skip
    return Pki(folder)


def client_tls(pki: Pki, cert: str | None = "client", ca: str = "ca.crt") -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=pki[ca])
    if cert:
        context.load_cert_chain(pki[f"{cert}.crt"], pki[f"{cert}.key"])
    return context


# --- an HTTP fault proxy in front of Orthanc -----------------------------------------------


class FaultProxy:
    """TCP forwarder to Orthanc's HTTP port that can be switched off and on.

    ``down()`` closes the listening socket (new connections are refused) and cuts every
    open connection mid-request, as an Orthanc crash or a network split would.
    """

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._accepting = threading.Thread(target=self._accept_loop, daemon=True, name="fault-proxy")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self.up()
        self._accepting.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.down()

    def up(self) -> None:
        with self._lock:
            if self._listener is None:
                listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                listener.bind(("127.0.0.1", self.port))
                listener.listen(128)
                listener.settimeout(0.1)
                self._listener = listener

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        if listener is not None:
            listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                conn.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            listener = self._listener
            if listener is None:
                time.sleep(0.02)
                continue
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is None:
                    client.close()
                    upstream.close()
                    continue
                self._conns.update((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        try:
            a.setblocking(False)
            b.setblocking(False)
            selector.register(a, selectors.EVENT_READ, b)
            selector.register(b, selectors.EVENT_READ, a)
            while True:
                for key, _ in selector.select(timeout=1.0):
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    data = source.recv(65536)
                    if not data:
                        return
                    key.data.setblocking(True)
                    key.data.sendall(data)
                    key.data.setblocking(False)
        except (OSError, ValueError):
            return
        finally:
            selector.close()
            with self._lock:
                self._conns.discard(a)
                self._conns.discard(b)
            a.close()
            b.close()


# --- a light C-MOVE destination ------------------------------------------------------------


@contextlib.contextmanager
def ct_destination(aet: str) -> Iterator[StorageScp]:
    """A C-MOVE destination for the synthetic CT instances only.

    The shared fixture accepts every storage class in every transfer syntax, and pynetdicom
    deep-copies all of that for each association it accepts (~170 ms of CPU): under load
    in the test process that, not the server under test, would set the pace of C-MOVEs.
    """
    scp = StorageScp(aet, free_port())
    ae = AE(ae_title=aet)
    ae.maximum_associations = 200
    ae.add_supported_context(CTImageStorage, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    server = ae.start_server(
        ("127.0.0.1", scp.port), block=False, evt_handlers=[(evt.EVT_C_STORE, scp.on_store)]
    )
    assert server is not None
    try:
        yield scp
    finally:
        server.shutdown()


# --- DICOM clients ---------------------------------------------------------------------------


def client_ae(aet: str = "MODALITY", storage: bool = True) -> AE:
    ae = AE(ae_title=aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(Verification)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)
    if storage:
        ae.add_requested_context(CTImageStorage)
    return ae


def associate(
    port: int,
    called: str,
    calling: str = "MODALITY",
    tls: ssl.SSLContext | None = None,
    bind_address: tuple[str, int] | None = None,
    ae: AE | None = None,
) -> Association:
    ae = ae or client_ae(calling)
    # The server's calm waits for the test's own clients too: fifty of pynetdicom's polling
    # requestors would otherwise saturate the test process and time out on their own.
    kwargs: dict[str, Any] = {"ae_title": called, "evt_handlers": [(evt.EVT_CONN_OPEN, _calm_client)]}
    if tls is not None:
        kwargs["tls_args"] = (tls, "localhost")
    if bind_address is not None:
        kwargs["bind_address"] = bind_address
    return ae.associate("127.0.0.1", port, **kwargs)


def _calm_client(event: evt.Event) -> None:
    calm(event.assoc)


def pause_reactor(assoc: Association, timeout: float = 1.0) -> None:
    """Have the association's reactor stop at its checkpoint before a request is sent.

    ``send_c_*()`` does this itself, but a calm reactor (``tenant_server.sockets.calm``) may
    be waiting up to ``CALM_WAIT`` for a message first: waking it saves that wait on every
    exchange. Then wait until the reactor really blocks on the checkpoint (an uncalmed,
    unguarded reactor could otherwise still take the answer: see ``guard_answers``).
    """
    checkpoint: Any = assoc._reactor_checkpoint
    checkpoint.clear()
    wake = getattr(assoc, "calm_wake", None)
    if wake is not None:
        wake.set()
    deadline = time.monotonic() + timeout
    while not (assoc._is_paused and checkpoint._cond._waiters) and time.monotonic() < deadline:
        if not assoc.is_alive():
            return
        time.sleep(0.0001)


def rejection(assoc: Association) -> tuple[int, int, int] | None:
    """The A-ASSOCIATE-RJ (result, source, reason) of a rejected association."""
    if not assoc.is_rejected:
        return None
    primitive: Any = assoc.acceptor.primitive
    return int(primitive.result), int(primitive.result_source), int(primitive.diagnostic)


def study_query(study_uid: str = "", **keys: Any) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study_uid
    for key, value in keys.items():
        setattr(ds, key, value)
    return ds


def find(assoc: Association, query: Dataset) -> tuple[int, list[Dataset]]:
    """Final status and the matches of one C-FIND."""
    answers: list[Dataset] = []
    final = -1
    pause_reactor(assoc)
    for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
        if not status:
            return -1, answers  # no answer: timeout or abort
        final = int(status.Status)
        if final in (0xFF00, 0xFF01) and identifier is not None:
            answers.append(identifier)
    return final, answers


def move(assoc: Association, query: Dataset, destination: str) -> tuple[int, int]:
    """Final status and the number of completed sub-operations of one C-MOVE."""
    final, completed = -1, 0
    pause_reactor(assoc)
    for status, _ in assoc.send_c_move(query, destination, StudyRootQueryRetrieveInformationModelMove):
        if not status:
            return -1, completed
        final = int(status.Status)
        completed = int(status.get("NumberOfCompletedSuboperations", completed) or completed)
    return final, completed


def store(assoc: Association, ds: Dataset) -> int:
    pause_reactor(assoc)
    status = assoc.send_c_store(ds)
    return int(status.Status) if "Status" in status else -1


def echo(assoc: Association) -> int:
    pause_reactor(assoc)
    status = assoc.send_c_echo()
    return int(status.Status) if "Status" in status else -1


def labelled_instances(url: str, auth: tuple[str, str], label: str) -> set[str]:
    """SOP Instance UIDs Orthanc holds with this label on the instance, its series and its study."""
    with requests.Session() as session:
        session.auth = auth

        def expanded(level: str) -> list[dict[str, Any]]:
            body = {"Level": level, "Query": {}, "Labels": [label], "LabelsConstraint": "All", "Expand": True}
            reply = session.post(url + "/tools/find", json=body, timeout=120)
            reply.raise_for_status()
            result: list[dict[str, Any]] = reply.json()
            return result

        studies = {item["ID"] for item in expanded("Study")}
        series = {item["ID"] for item in expanded("Series") if item["ParentStudy"] in studies}
        return {
            item["MainDicomTags"]["SOPInstanceUID"]
            for item in expanded("Instance")
            if item["ParentSeries"] in series
        }


def instance_ids(patient_id: str, study: str, series: str, sop: str) -> str:
    return orthanc_id(patient_id, study, series, sop)


def tls_context_for_old_protocol() -> ssl.SSLContext:
    """A client that speaks TLS 1.1 at most (security level 0 so OpenSSL 3 lets it try)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # deprecated is the point
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    return context


__all__ = [
    "DCMTK",
    "LONG",
    "FaultProxy",
    "Pki",
    "ServerProcess",
    "associate",
    "build_context",
    "client_ae",
    "client_tls",
    "cpu_seconds",
    "ct_destination",
    "echo",
    "find",
    "instance_ids",
    "labelled_instances",
    "long_or",
    "make_pki",
    "move",
    "pause_reactor",
    "process_config",
    "process_stats",
    "rejection",
    "server_process",
    "store",
    "study_query",
    "tls_context_for_old_protocol",
    "wait_port",
]
