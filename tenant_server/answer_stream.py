"""Pending C-FIND answers written to the association's socket by the handler itself.

See answer_encoding.py for why. Writing from the handler's thread is safe because,
while a C-FIND runs on an association (no asynchronous operations are negotiated),
nothing else is sent on it: pynetdicom's DUL thread only reads (a C-CANCEL, an
A-ABORT). It is done on plain TCP only: an ``ssl.SSLSocket`` must not be read and
written from two threads. The final status still goes through pynetdicom, after the
last direct write has returned, so it cannot overtake an answer.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import Any

from pydicom.uid import UID

from tenant_server.answer_encoding import encode_answer, find_response_command, message_pdus
from tenant_server.identifiers import Answer

PENDING = 0xFF00
FLUSH_BYTES = 64 * 1024  # answers leave in writes of about this size (and at the end)


class DirectAnswers:
    def __init__(
        self, raw: socket.socket, context_id: int, implicit: bool, request: Any, max_pdu: int
    ) -> None:
        self.raw = raw
        self.context_id = context_id
        self.implicit = implicit
        self.sop_class = str(request.AffectedSOPClassUID)
        self.message_id = int(request.MessageID)
        self.max_pdu = max_pdu
        self.broken = False  # the socket failed: the association is going down

    @classmethod
    def for_event(cls, event: Any) -> DirectAnswers | None:
        """A direct writer for this C-FIND, or None when pynetdicom must send (TLS, big endian,
        deflated)."""
        raw = getattr(event.assoc.dul.socket, "socket", None)
        syntax = UID(str(event.context.transfer_syntax))
        if not isinstance(raw, socket.socket) or isinstance(raw, ssl.SSLSocket):
            return None
        if not syntax.is_little_endian or syntax.is_deflated:
            return None
        return cls(
            raw,
            event.context.context_id,
            syntax.is_implicit_VR,
            event.request,
            event.assoc.dimse.maximum_pdu_size,
        )

    def send(self, answers: list[Answer], is_cancelled: Callable[[], bool]) -> int:
        """Write answers in order until one cannot be encoded here, the SCU cancels or the
        connection fails; returns how many were written (the rest are pynetdicom's to send)."""
        command = find_response_command(self.sop_class, self.message_id, PENDING, True)
        buffer = bytearray()
        sent = 0
        for answer in answers:
            encoded = None if self.broken or is_cancelled() else encode_answer(answer, self.implicit)
            if encoded is None:
                break
            buffer += message_pdus(self.context_id, command, encoded, self.max_pdu)
            sent += 1
            if len(buffer) >= FLUSH_BYTES:
                self._write(buffer)
                buffer.clear()
        self._write(buffer)
        return sent

    def _write(self, data: bytearray) -> None:
        if not data or self.broken:
            return
        try:
            self.raw.sendall(data)
        except OSError:  # peer gone or stuck past the socket timeout (DicomScpTimeout)
            self.broken = True
