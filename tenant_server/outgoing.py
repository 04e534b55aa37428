"""A hook on the DIMSE messages an accepted association sends.

pynetdicom's service classes send every response through ``dimse.send_msg``; two parts of
the server need to see them on the way out: ``store_response`` encodes C-STORE-RSPs
itself, ``final_responses`` audits how a retrieve ended. Each hook gets the sender it
replaces and decides whether and how to call it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pynetdicom import evt

Send = Callable[[Any, int], None]
Hook = Callable[[Any, Send, Any, int], None]  # (association, previous sender, primitive, context ID)


def hook_sends(event: evt.Event, hook: Hook) -> None:
    """Route the association's outgoing messages through ``hook`` (accepted associations only)."""
    assoc: Any = event.assoc
    if not assoc.is_acceptor:
        return
    send: Send = assoc.dimse.send_msg

    def send_msg(primitive: Any, context_id: int) -> None:
        hook(assoc, send, primitive, context_id)

    assoc.dimse.send_msg = send_msg
