"""Start and stop a throw-away Orthanc on loopback ports with a fresh database."""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

PLUGIN_FILE = "libMultitenantDicom.so"
PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc/plugins")


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class OrthancRuntime:
    """How to launch Orthanc: a system binary, or the binary inside a chroot."""

    binary: str
    chroot: Path | None = None

    def host_path(self, inner: str) -> Path:
        """Map a path as Orthanc sees it to the path on this machine."""
        return self.chroot / inner.lstrip("/") if self.chroot else Path(inner)

    def command(self, *args: str) -> list[str]:
        base = [self.binary, *args]
        return ["chroot", str(self.chroot), *base] if self.chroot else base

    def version(self) -> tuple[int, int, int]:
        out = subprocess.run(
            self.command("--version"),
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        match = re.search(r"(\d+)\.(\d+)\.(\d+)", out)
        if not match:
            raise RuntimeError(f"cannot read Orthanc's version from: {out[:200]!r}")
        major, minor, patch = (int(g) for g in match.groups())
        return major, minor, patch

    def plugin_path(self) -> str | None:
        """The official MultitenantDicom plugin's path as Orthanc sees it, if installed."""
        for folder in PLUGIN_DIRS:
            inner = f"{folder}/{PLUGIN_FILE}"
            if self.host_path(inner).exists():
                return inner
        return None


@dataclass
class LocalOrthanc:
    """One Orthanc process with its own database folder, HTTP and DICOM ports.

    Authentication is always on, with a random password, so that everything talking
    to it proves it handles credentials.
    """

    runtime: OrthancRuntime
    extra_config: dict[str, Any] = field(default_factory=dict)
    with_plugin: bool = False
    username: str = "orthanc-test"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    http_port: int = field(default_factory=free_port)
    dicom_port: int = field(default_factory=free_port)
    aet: str = "ORTHANC"
    _process: subprocess.Popen[bytes] | None = None
    _workdir: Path | None = None
    _log: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path | None:
        return self._workdir / "orthanc.log" if self._workdir else None

    def config(self, inner_dir: str) -> dict[str, Any]:
        config: dict[str, Any] = {
            "Name": "multitenant-dicom-test",
            "StorageDirectory": f"{inner_dir}/db",
            "IndexDirectory": f"{inner_dir}/db",
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.username: self.password},
            "HttpServerEnabled": True,
            "StableAge": 2,
            "ConcurrentJobs": 4,
            "HttpThreadsCount": 32,
            "Plugins": [],
        }
        if self.with_plugin:
            plugin = self.runtime.plugin_path()
            if plugin is None:
                raise RuntimeError(f"the official plugin {PLUGIN_FILE} is not installed here")
            config["Plugins"] = [plugin]
        config.update(self.extra_config)
        return config

    def start(self, timeout: float = 60.0) -> LocalOrthanc:
        scratch_parent = self.runtime.host_path("/tmp")
        scratch_parent.mkdir(parents=True, exist_ok=True)
        self._workdir = Path(tempfile.mkdtemp(prefix="orthanc-", dir=scratch_parent))
        inner_dir = "/tmp/" + self._workdir.name if self.runtime.chroot else str(self._workdir)
        (self._workdir / "config.json").write_text(json.dumps(self.config(inner_dir), indent=2))
        self._log = open(self._workdir / "orthanc.log", "wb")  # noqa: SIM115 - lives with the process
        self._process = subprocess.Popen(
            self.runtime.command(f"{inner_dir}/config.json"),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start:\n{self.log_tail()}")
            try:
                reply = requests.get(f"{self.url}/system", auth=(self.username, self.password), timeout=2)
                if reply.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        """Stop Orthanc and wait until the process has really gone (it takes a few seconds)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None and not os.environ.get("MTDICOM_KEEP_ORTHANC"):
            shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> LocalOrthanc:
        return self.start() if self._process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
