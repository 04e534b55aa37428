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
pynetdicom already handles. For the same reason a PDU announcing more than
``MAX_PDU_BYTES`` closes the connection before anything is buffered.

pynetdicom's two threads per association poll every millisecond, busy or idle: about 2,000
wake-ups a second per association. Twenty idle associations kept one core (and the GIL)
busy; with fifty, requests waited seconds for the GIL and clients hit DIMSE timeouts.
``calm`` makes an accepted association's threads wait for work instead: the DUL thread in
``select`` on the socket and on a wake-up pair poked whenever a primitive is queued for
sending, the association's reactor until a DIMSE message or an ACSE primitive (release,
abort) is queued for it. Both still look around every ``CALM_WAIT`` (timers, shutdown).
Latency is unchanged: a PDU, a queued answer or a release request wakes its thread at once.
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

from pynetdicom import evt

QUICKACK = getattr(socket, "TCP_QUICKACK", None)
CALM_WAIT = 0.05  # seconds an idle association's threads wait before looking around again
# pynetdicom reads a PDU of any announced length (up to 4 GiB) into memory before decoding
# it, whatever maximum length was negotiated. Legitimate PDUs are at most MaximumPduLength
# (131072 at most here) or an association request of a few dozen kB.
MAX_PDU_BYTES = 1 << 20


def _set(sock: socket.socket, option: int) -> None:
    with contextlib.suppress(OSError):  # not TCP (e.g. a closed socket): nothing to tune
        sock.setsockopt(socket.IPPROTO_TCP, option, 1)


def guard_answers(assoc: Any) -> None:
    """Keep an association's reactor from taking the answer a ``send_c_*()`` is waiting for.

    ``send_c_*()`` clears the reactor checkpoint and waits for ``_is_paused``; but the flag
    is still True for a moment after the previous exchange released the reactor, which then
    runs on into ``get_msg`` and can take the next answer off the DIMSE queue: the sender
    waits a whole DIMSE timeout for an answer the peer did send. Seen as stalled C-MOVE
    sub-operations under load, and ~1 in 700 exchanges of a pynetdicom client. While the
    checkpoint is cleared a sender owns the queue, so the reactor leaves it alone.
    """
    dimse, checkpoint = assoc.dimse, assoc._reactor_checkpoint
    get_msg = dimse.get_msg

    def get_msg_guarded(block: bool = False) -> Any:
        if not block and not checkpoint.is_set():
            return None, None
        return get_msg(block)

    dimse.get_msg = get_msg_guarded


def tune_association(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler for both accepted and outgoing associations."""
    guard_answers(event.assoc)
    wrapper: Any = event.assoc.dul.socket
    raw = getattr(wrapper, "socket", None)
    if wrapper is None or raw is None:
        return
    timeout = event.assoc.network_timeout
    if timeout:
        with contextlib.suppress(OSError):
            raw.settimeout(timeout)
    _set(raw, socket.TCP_NODELAY)
    original: Callable[[int], Any] = wrapper.recv

    def recv_bounded(nr_bytes: int) -> Any:
        if nr_bytes > MAX_PDU_BYTES:  # raised as a transport error: pynetdicom closes the connection
            raise OSError(f"a PDU of {nr_bytes} bytes exceeds the {MAX_PDU_BYTES} bytes accepted")
        data = original(nr_bytes)
        current = getattr(wrapper, "socket", None)
        if current is not None and QUICKACK is not None:
            _set(current, QUICKACK)
        return data

    wrapper.recv = recv_bounded
    if QUICKACK is not None:
        _set(raw, QUICKACK)


def calm(assoc: Any) -> None:
    """Replace pynetdicom's 1 ms polling by waits that end as soon as there is work.

    For an association whose DUL thread has not started (accepted ones, at EVT_CONN_OPEN)
    or is the caller (outgoing ones connect from it).
    """
    dul, dimse, transport = assoc.dul, assoc.dimse, assoc.dul.socket
    waker, wakee = socket.socketpair()
    waker.setblocking(False)
    wakee.setblocking(False)
    assoc.calm_pair = (waker, wakee)

    waiting = False  # the DUL is (about to be) in select: a queued primitive must wake it

    def poke() -> None:
        if waiting:
            with contextlib.suppress(OSError):
                waker.send(b"\0")

    # The DUL: woken by the peer's bytes or by a primitive queued for sending.
    provider_queue = dul.to_provider_queue
    provider_queue.put = _then(provider_queue.put, poke)
    is_transport_event = dul._is_transport_event

    def wait_then_check() -> bool:
        nonlocal waiting
        waiting = True  # before looking at the queue: a put from now on pokes
        raw = transport.socket
        idle = (
            raw is not None
            and not dul._kill_thread
            and dul.event_queue.empty()
            and provider_queue.empty()
            and not (isinstance(raw, ssl.SSLSocket) and raw.pending())
        )
        if idle:
            with contextlib.suppress(OSError, ValueError):  # closed meanwhile: the check below tells
                readable, _, _ = select.select([raw, wakee], [], [], CALM_WAIT)
                if wakee in readable:
                    with contextlib.suppress(OSError):
                        wakee.recv(4096)
        waiting = False
        result: bool = is_transport_event()
        return result

    dul._is_transport_event = wait_then_check

    # pynetdicom's DUL sends *or* receives per loop, sending first: while answers queue up
    # faster than they leave (a C-FIND streaming 300 matches), the peer's C-CANCEL or
    # A-ABORT is not even read until the last one is sent. After each send, read first
    # if the peer has sent something.
    process_outgoing = dul._process_recv_primitive
    sent_last = False

    def take_turns() -> bool:
        nonlocal sent_last
        raw = transport.socket
        if sent_last and raw is not None:
            sent_last = False
            with contextlib.suppress(OSError, ValueError):
                if select.select([raw], [], [], 0)[0]:
                    return False  # the loop goes on to read the peer's PDU
        sent_last = bool(process_outgoing())
        return sent_last

    dul._process_recv_primitive = take_turns

    # The reactor: woken by a DIMSE message or an ACSE primitive (release, abort) for it.
    arrived = threading.Event()
    assoc.calm_wake = arrived  # set() it to have the reactor look around at once
    for incoming in (dimse.msg_queue, dul.to_user_queue):
        incoming.put = _then(incoming.put, arrived.set)
    get_msg, checkpoint = dimse.get_msg, assoc._reactor_checkpoint

    def get_msg_waiting(block: bool = False) -> Any:
        if block:  # a send_c_*() waiting for its answer: unchanged
            return get_msg(block)
        arrived.clear()
        if checkpoint.is_set():  # see guard_answers
            with contextlib.suppress(queue.Empty):
                return dimse.msg_queue.get_nowait()
        arrived.wait(CALM_WAIT)
        if checkpoint.is_set():
            with contextlib.suppress(queue.Empty):
                return dimse.msg_queue.get_nowait()
        return None, None  # nothing for DIMSE: the reactor goes on to its other checks

    dimse.get_msg = get_msg_waiting


def _then(put: Callable[..., None], after: Callable[[], Any]) -> Callable[..., None]:
    def put_then(item: Any, block: bool = True, timeout: float | None = None) -> None:
        put(item, block, timeout)
        after()

    return put_then


def calm_accepted(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler: calm an accepted association (outgoing ones keep pynetdicom's loops)."""
    if event.assoc.is_acceptor:
        calm(event.assoc)


def release_calm(event: evt.Event) -> None:
    """EVT_CONN_CLOSE handler: close the wake-up pair with the connection."""
    for end in getattr(event.assoc, "calm_pair", ()):
        end.close()


TUNING_HANDLERS = [
    (evt.EVT_CONN_OPEN, tune_association),
    (evt.EVT_CONN_OPEN, calm_accepted),
    (evt.EVT_CONN_CLOSE, release_calm),
]
