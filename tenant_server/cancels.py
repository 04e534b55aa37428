"""Keep a C-CANCEL that arrives right behind its request.

pynetdicom's DUL thread files each C-CANCEL it reads under its Message ID, and the
association's reactor empties that file when it *starts* serving the next request (to
forget cancels of earlier requests). Both threads run at once: when the reactor is slower
to take a C-FIND off the queue than the DUL is to read the C-CANCEL sent right after it,
the cancel is thrown away and the whole query is answered. Seen in CI, on a loaded
machine, as a cancelled C-FIND that returned all its 30 matches.

Here the file is emptied at the right moment instead: by the DUL thread, when it queues a
new request, so only cancels read *before* that request are forgotten. Without
asynchronous operations (which the server never negotiates) a peer has at most one
request outstanding, so every earlier cancel refers to a finished request. The
reactor's own resets are ignored. C-GET's C-STORE *responses* from the peer do not empty
it: a cancel of the running C-GET must survive them.
"""

from __future__ import annotations

from typing import Any

from pynetdicom import evt
from pynetdicom.dimse import DIMSEServiceProvider


class _LateCancelsKept(DIMSEServiceProvider):
    """pynetdicom's DIMSE provider whose ``cancel_req`` is emptied only by ``keep_late_cancels``."""

    @property
    def cancel_req(self) -> dict[int, Any]:
        kept: dict[int, Any] = self.__dict__["cancel_req"]
        return kept

    @cancel_req.setter
    def cancel_req(self, value: dict[int, Any]) -> None:
        self.__dict__.setdefault("cancel_req", value)  # pynetdicom's resets are ignored


def keep_late_cancels(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler for accepted associations."""
    if not event.assoc.is_acceptor:
        return
    dimse: Any = event.assoc.dimse
    dimse.__class__ = _LateCancelsKept
    incoming = dimse.msg_queue
    put = incoming.put

    def put_forgetting_older_cancels(item: Any, block: bool = True, timeout: float | None = None) -> None:
        _context_id, primitive = item
        if primitive is not None and getattr(primitive, "MessageIDBeingRespondedTo", None) is None:
            dimse.cancel_req.clear()
        put(item, block, timeout)

    incoming.put = put_forgetting_older_cancels
