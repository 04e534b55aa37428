"""Make each DIMSE exchange fast on our side of the socket, whatever the client does, and
never let a silent peer hold a thread forever.

A DIMSE message leaves as several small writes; Nagle's algorithm holds the later ones
until the peer acknowledges, and the peer delays its ACK by 40 ms or more. Measured
(docs/performance.md): ~90 ms per C-FIND and ~11 C-STOREs/s otherwise. ``TCP_NODELAY``
stops our sends from waiting; ``TCP_QUICKACK``, re-armed after every receive because
Linux clears it, acknowledges the client at once so its Nagle does not wait either.

pynetdicom leaves sockets blocking without a timeout. A peer that sends the start of a
PDU and then nothing (or stops reading our answers) blocks its DUL thread in ``recv`` (or
``send``) for as long as it keeps the connection open: the idle timeout cannot fire, the
association never ends, and it counts against MaxAssociations and the shutdown. A socket
timeout of ``network_timeout`` (DicomScpTimeout) turns that into the transport error
pynetdicom already handles.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any

from pynetdicom import evt

QUICKACK = getattr(socket, "TCP_QUICKACK", None)


def _set(sock: socket.socket, option: int) -> None:
    with contextlib.suppress(OSError):  # not TCP (e.g. a closed socket): nothing to tune
        sock.setsockopt(socket.IPPROTO_TCP, option, 1)


def tune_association(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler for both accepted and outgoing associations."""
    wrapper: Any = event.assoc.dul.socket
    raw = getattr(wrapper, "socket", None)
    if wrapper is None or raw is None:
        return
    timeout = event.assoc.network_timeout
    if timeout:
        with contextlib.suppress(OSError):
            raw.settimeout(timeout)
    _set(raw, socket.TCP_NODELAY)
    if QUICKACK is None:
        return
    quickack: int = QUICKACK
    original: Callable[[int], Any] = wrapper.recv

    def recv_with_quickack(nr_bytes: int) -> Any:
        data = original(nr_bytes)
        current = getattr(wrapper, "socket", None)
        if current is not None:
            _set(current, quickack)
        return data

    wrapper.recv = recv_with_quickack
    _set(raw, quickack)


TUNING_HANDLERS = [(evt.EVT_CONN_OPEN, tune_association)]
