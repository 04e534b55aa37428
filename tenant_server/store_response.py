"""C-STORE responses encoded here instead of through pydicom.

pynetdicom turns every response primitive into a pydicom ``Dataset`` and encodes it with
pydicom's general writer: 16 % of the server's Python time in a C-STORE (py-spy, four
associations storing). A C-STORE-RSP is six or seven elements of fixed VRs; encoded here
it is the same bytes (``tests/test_store_response.py``), handed to the DUL as pynetdicom
hands them, so TLS, PDU sizes and the order of messages stay pynetdicom's. A response
with anything unusual (an Offending Element, a comment outside ASCII, a handler bound to
``EVT_DIMSE_SENT``, a tiny maximum PDU) still goes through pynetdicom.
"""

from __future__ import annotations

from typing import Any

from pynetdicom import evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

from tenant_server.answer_encoding import NO_DATASET, PDV_HEADER, command_element, command_set, padded
from tenant_server.outgoing import Send, hook_sends

C_STORE_RSP = 0x8001
LAST_COMMAND_FRAGMENT = b"\x03"


def store_response_command(rsp: C_STORE) -> bytes | None:
    """The response's command set, or None when pynetdicom must encode it."""
    sop_class, sop_instance = rsp.AffectedSOPClassUID, rsp.AffectedSOPInstanceUID
    if rsp.OffendingElement or not sop_class or not sop_instance or rsp.Status is None:
        return None
    comment = str(rsp.ErrorComment or "")
    try:  # UIDs are echoed from the request: a peer's malformed one is pydicom's to judge
        elements = [
            command_element(0x0002, str(sop_class)),
            command_element(0x0100, C_STORE_RSP),
            command_element(0x0120, int(rsp.MessageIDBeingRespondedTo)),  # type: ignore[arg-type]
            command_element(0x0800, NO_DATASET),
            command_element(0x0900, int(rsp.Status)),
            *([command_element(0x0902, padded("LO", comment.encode("ascii")))] if comment else []),
            command_element(0x1000, str(sop_instance)),
        ]
    except UnicodeEncodeError:
        return None
    return command_set(elements)


def send_store_response(assoc: Any, send: Send, primitive: Any, context_id: int) -> None:
    """``outgoing`` hook: a C-STORE-RSP as one P-DATA of our own encoding, anything else as before."""
    command = None
    if isinstance(primitive, C_STORE) and primitive.MessageIDBeingRespondedTo is not None:
        command = store_response_command(primitive)
    room = assoc.dimse.maximum_pdu_size or 1 << 31
    if command is None or len(command) + PDV_HEADER > room or assoc.get_handlers(evt.EVT_DIMSE_SENT):
        send(primitive, context_id)
        return
    pdata = P_DATA()
    pdata.presentation_data_value_list.append((context_id, LAST_COMMAND_FRAGMENT + command))
    assoc.dul.send_pdu(pdata)


def direct_store_responses(event: evt.Event) -> None:
    """EVT_CONN_OPEN handler: an accepted association's C-STORE-RSPs skip pydicom."""
    hook_sends(event, send_store_response)
