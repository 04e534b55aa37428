"""What a benchmark run compares: Orthanc 1.12 with the official plugin, and our tenant server,
both serving one tenant with the same labels over the same database.

- Orthanc is the foundation's provisioning (``local_orthanc``): the same binary, plugin and
  SQLite database the tests use, with authentication on.
- The plugin tenant ``PLUGIN`` and our tenant ``OURS`` both use the label ``bench``.
- Our tenant server runs as its own process (``python -m tenant_server``), so it never
  shares the benchmark client's GIL.
- One C-MOVE destination (``BENCHDEST``) is registered in Orthanc's ``DicomModalities``
  (for the plugin) and in our configuration's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from local_orthanc.provision import find_runtime
from local_orthanc.server import LocalOrthanc, free_port

from bench.destination import Destination

LABEL = "bench"
PLUGIN_AET = "PLUGIN"
OURS_AET = "OURS"


@dataclass
class Side:
    """One tenant endpoint under test."""

    name: str
    aet: str
    port: int


def _wait_http(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {timeout} s")


@dataclass
class TenantServerProcess:
    """``python -m tenant_server`` with a generated configuration; its PID is sampled for RSS."""

    orthanc: LocalOrthanc
    servers: list[dict[str, Any]]
    workdir: Path
    modalities: dict[str, Any] = field(default_factory=dict)
    health_port: int = field(default_factory=free_port)
    log_level: str = "INFO"
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> TenantServerProcess:
        config = {
            "Orthanc": {"Url": self.orthanc.url},
            "MultitenantDicom": {"Servers": self.servers},
            "DicomModalities": self.modalities,
            "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowMove": True,
            "TenantServer": {"HealthPort": self.health_port, "BindAddress": "127.0.0.1"},
        }
        path = self.workdir / f"tenant-server-{self.health_port}.json"
        path.write_text(json.dumps(config, indent=2))
        env = {
            **os.environ,
            "ORTHANC_URL": self.orthanc.url,
            "ORTHANC_USERNAME": self.orthanc.username,
            "ORTHANC_PASSWORD": self.orthanc.password,
        }
        log = open(self.workdir / f"tenant-server-{self.health_port}.log", "wb")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tenant_server", "--config", str(path), "--log-level", self.log_level],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        _wait_http(f"http://127.0.0.1:{self.health_port}/readyz", 60, self.process)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


class Stack:
    """Everything a run needs, started in order and stopped in reverse."""

    def __init__(self) -> None:
        self._exit = ExitStack()
        self.workdir = Path(tempfile.mkdtemp(prefix="mtdicom-bench-"))
        self.destination = Destination(free_port())
        self.plugin = Side("plugin", PLUGIN_AET, free_port())
        self.ours = Side("ours", OURS_AET, free_port())
        self.orthanc: LocalOrthanc | None = None
        self.tenant_server: TenantServerProcess | None = None

    @property
    def sides(self) -> list[Side]:
        return [self.plugin, self.ours]

    def destination_entry(self) -> dict[str, Any]:
        return {"AET": self.destination.aet, "Host": "127.0.0.1", "Port": self.destination.port}

    def start(self) -> Stack:
        try:
            self.destination.start()
            self._exit.callback(self.destination.stop)
            self.orthanc = LocalOrthanc(
                runtime=find_runtime(),
                with_plugin=True,
                extra_config={
                    "MultitenantDicom": {
                        "Servers": [{"AET": PLUGIN_AET, "Port": self.plugin.port, "Labels": [LABEL]}]
                    },
                    "DicomAlwaysAllowFind": True,
                    "DicomAlwaysAllowMove": True,
                    "DicomModalities": {"dest": self.destination_entry()},
                },
            ).start()
            self._exit.callback(self.orthanc.stop)
            self.tenant_server = self.start_tenant_server(
                [{"AET": OURS_AET, "Port": self.ours.port, "Labels": [LABEL]}]
            )
            _wait_port(self.plugin.port)
        except BaseException:
            self.stop()
            raise
        return self

    def start_tenant_server(self, servers: list[dict[str, Any]]) -> TenantServerProcess:
        assert self.orthanc is not None
        process = TenantServerProcess(
            self.orthanc, servers, self.workdir, modalities={"dest": self.destination_entry()}
        ).start()
        self._exit.callback(process.stop)
        return process

    def rest(self) -> requests.Session:
        assert self.orthanc is not None
        session = requests.Session()
        session.auth = (self.orthanc.username, self.orthanc.password)
        return session

    @property
    def url(self) -> str:
        assert self.orthanc is not None
        return self.orthanc.url

    def stop(self) -> None:
        self._exit.close()
        if not os.environ.get("MTDICOM_KEEP_BENCH"):
            subprocess.run(["rm", "-rf", str(self.workdir)], check=False)

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _wait_port(port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")
