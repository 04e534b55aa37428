"""How a C-MOVE or C-GET really ended, read off its final response.

pynetdicom runs the sub-operations and composes the final response itself: it counts the
completed, failed and warning C-STOREs, answers 0xB000 or 0xA702 when some or all failed,
0xA801 when the move destination cannot be reached, and, for a count of 0 or above 65535,
answers without ever resuming the handler. The handler therefore cannot write the audit
line; it registers what the line needs, and the line is written when pynetdicom sends the
final response, with that response's status and counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary

from pynetdicom import evt
from pynetdicom.dimse_primitives import C_GET, C_MOVE

from tenant_server.outgoing import Send, hook_sends

PENDING = 0xFF00
Callback = Callable[[Any], None]

_waiting: WeakKeyDictionary[Any, Callback] = WeakKeyDictionary()


def when_answered(assoc: Any, callback: Callback) -> None:
    """Call ``callback(final response primitive)`` when this association's retrieve ends."""
    _waiting[assoc] = callback


def suboperation_counts(rsp: Any) -> dict[str, int]:
    """The final response's sub-operation counts, those it carries."""
    counts = {
        "completed": rsp.NumberOfCompletedSuboperations,
        "failed": rsp.NumberOfFailedSuboperations,
        "warning": rsp.NumberOfWarningSuboperations,
    }
    return {name: int(value) for name, value in counts.items() if value is not None}


def audit_final_response(assoc: Any, send: Send, primitive: Any, context_id: int) -> None:
    """``outgoing`` hook: the registered callback sees a retrieve's final response first."""
    final = (
        isinstance(primitive, C_MOVE | C_GET)
        and primitive.MessageIDBeingRespondedTo is not None
        and primitive.Status != PENDING
    )
    callback = _waiting.pop(assoc, None) if final else None
    try:
        if callback is not None:
            callback(primitive)
    finally:  # the peer gets its answer whatever the audit does
        send(primitive, context_id)


def watch_final_responses(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler for accepted associations."""
    hook_sends(event, audit_final_response)
