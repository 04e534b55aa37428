"""The C-MOVE destination: a stock pynetdicom storage SCP in a process of its own.

It is left untuned (no socket options), as a third-party archive or viewer would be, and
counts what it receives in shared memory so the benchmark can check every sub-operation
arrived, whichever tenant server sent it.
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.process
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
    def __init__(self, port: int, aet: str = DEST_AET) -> None:
        self.port = port
        self.aet = aet
        context = multiprocessing.get_context("spawn")
        self._counter: Synchronized = context.Value("q", 0)
        self._ready = context.Event()
        self._process: multiprocessing.process.BaseProcess = context.Process(
            target=_serve, args=(port, aet, self._counter, self._ready), daemon=True
        )

    def start(self) -> Destination:
        self._process.start()
        if not self._ready.wait(30):
            raise RuntimeError("the C-MOVE destination did not start")
        return self

    @property
    def received(self) -> int:
        return int(self._counter.value)

    def wait_for(self, count: int, timeout: float = 30.0) -> bool:
        """Wait until at least ``count`` instances arrived (C-MOVE answers may precede the last ack)."""
        deadline = time.monotonic() + timeout
        while self.received < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.received >= count

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(10)
