"""The C-MOVE destination: dcmtk's ``storescp`` (stock options) in a process of its own.

A destination is a third-party archive or viewer: it is left untuned. ``storescp`` writes
each instance it receives to a scratch folder, and the files are counted so the benchmark
can check that every sub-operation arrived, whichever tenant server sent it.

Without dcmtk, a pynetdicom storage SCP takes its place. It is a poor stand-in for speed:
measured here, it takes 100-400 ms to accept an association (``storescp``: 7-16 ms), which
is paid once per C-MOVE and hides the servers' own differences.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
import os
import shutil
import subprocess
import tempfile
import threading
import time
from multiprocessing.sharedctypes import Synchronized
from typing import Any

DEST_AET = "BENCHDEST"


def _serve(port: int, aet: str, counter: Synchronized, ready: Any) -> None:
    from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt

    logging.getLogger("pynetdicom").setLevel(logging.ERROR)

    def on_store(event: evt.Event) -> int:
        with counter.get_lock():
            counter.value += 1
        return 0x0000

    ae = AE(ae_title=aet)
    ae.maximum_associations = 32
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(str(context.abstract_syntax), ALL_TRANSFER_SYNTAXES)
    ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    ready.set()
    threading.Event().wait()


class Destination:
    def __init__(self, port: int, aet: str = DEST_AET, use_dcmtk: bool | None = None) -> None:
        self.port = port
        self.aet = aet
        self.kind = (
            "storescp" if (shutil.which("storescp") if use_dcmtk is None else use_dcmtk) else "pynetdicom"
        )
        self._folder = tempfile.mkdtemp(prefix="mtdicom-bench-dest-")
        self._storescp: subprocess.Popen[bytes] | None = None
        context = multiprocessing.get_context("spawn")
        self._counter: Synchronized = context.Value("q", 0)
        self._ready = context.Event()
        self._process: multiprocessing.process.BaseProcess = context.Process(
            target=_serve, args=(port, aet, self._counter, self._ready), daemon=True
        )

    def start(self) -> Destination:
        if self.kind == "storescp":
            self._storescp = subprocess.Popen(
                [
                    "storescp",
                    "--aetitle",
                    self.aet,
                    "--unique-filenames",
                    "--output-directory",
                    self._folder,
                    str(self.port),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _wait_listening(self.port)
            return self
        self._process.start()
        if not self._ready.wait(30):
            raise RuntimeError("the C-MOVE destination did not start")
        return self

    @property
    def received(self) -> int:
        if self.kind == "storescp":
            with os.scandir(self._folder) as entries:
                return sum(1 for entry in entries if not entry.name.startswith("."))
        return int(self._counter.value)

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        """Wait until at least ``count`` instances arrived (C-MOVE answers may precede the last ack)."""
        deadline = time.monotonic() + timeout
        while self.received < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.received >= count

    def stop(self) -> None:
        if self._storescp is not None and self._storescp.poll() is None:
            self._storescp.terminate()
            self._storescp.wait(10)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(10)
        shutil.rmtree(self._folder, ignore_errors=True)


def _wait_listening(port: int, timeout: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the C-MOVE destination does not listen on port {port}")
