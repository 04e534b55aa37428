"""C-FIND answers encoded straight into P-DATA-TF PDUs, without pydicom's general writer.

Through pynetdicom, each pending answer becomes a pydicom ``Dataset``, is encoded with
``write_dataset`` together with a command set, and travels through two queues and the
DUL state machine: about 2 ms of Python per answer, 78 % of the server's time in a
1,000-answer C-FIND (docs/performance.md). An answer is a flat list of short values;
encoded here it costs a few dozen microseconds. Anything this module does not cover
(big endian or deflated transfer syntaxes, ISO 2022 character sets, values too long
for their VR) returns ``None`` and the answer goes through pynetdicom as before.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from pydicom.charset import python_encoding

from tenant_server.identifiers import FLOAT_VRS, INT_VRS, TEXT_VRS, Answer

C_FIND_RSP = 0x8020
DATASET_PRESENT, NO_DATASET = 0x0001, 0x0101
COMMAND_LAST, DATASET_LAST, DATASET_MORE = 0x03, 0x02, 0x00
PDV_HEADER = 6  # item length (4), presentation context ID (1), message control header (1)
# Explicit VRs with a reserved 2-byte field and a 4-byte length (PS3.5 7.1.2).
LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
INT_FORMATS = {"US": "H", "UL": "L", "SS": "h", "SL": "l", "UV": "Q", "SV": "q"}
FLOAT_FORMATS = {"FL": "f", "FD": "d"}


def codec_for(charset: str | None) -> str | None:
    """The Python codec of an answer's character set; None when only pydicom can encode it."""
    if charset is None:
        return "ascii"
    if "2022" in charset:  # code extensions switch character sets inside a value
        return None
    return python_encoding.get(charset)


def padded(vr: str, data: bytes) -> bytes:
    """A value made even in length as PS3.5 6.2 says: a NUL for UI and OB, else a space."""
    if len(data) % 2 == 0:
        return data
    return data + (b"\0" if vr in ("UI", "OB") else b" ")


def _value(vr: str, text: str | None, codec: str) -> bytes:
    """The padded value bytes, as pydicom would write them (see identifiers.to_element)."""
    if not text:
        return b""
    if vr in TEXT_VRS:
        return padded(vr, text.encode(codec))
    parts = text.split("\\")
    try:
        if vr in INT_VRS:
            return struct.pack(f"<{len(parts)}{INT_FORMATS[vr]}", *(int(p) for p in parts))
        if vr in FLOAT_VRS:
            return struct.pack(f"<{len(parts)}{FLOAT_FORMATS[vr]}", *(float(p) for p in parts))
    except (ValueError, struct.error):
        return b""
    return b""  # binary VRs and sequences: Orthanc has no value a C-FIND can return


def encode_answer(answer: Answer, implicit: bool) -> bytes | None:
    """The answer's data set in (implicit or explicit VR) little endian, or None."""
    codec = codec_for(answer.charset)
    if codec is None:
        return None
    out = bytearray()
    try:
        for tag, vr, text in sorted(answer.elements, key=lambda element: element[0]):
            value = _value(vr, text, codec)
            out += element_header(tag, vr, len(value), implicit)
            out += value
    except (UnicodeEncodeError, struct.error):  # a value pydicom must judge (and maybe refuse)
        return None
    return bytes(out)


def element_header(tag: int, vr: str, length: int, implicit: bool) -> bytes:
    """Tag, VR (explicit only) and length of a little endian element (PS3.5 7.1)."""
    group, element = tag >> 16, tag & 0xFFFF
    if implicit:
        return struct.pack("<HHL", group, element, length)
    if vr in LONG_VRS:
        return struct.pack("<HH2s2xL", group, element, vr.encode(), length)
    return struct.pack("<HH2sH", group, element, vr.encode(), length)


def command_element(element: int, value: bytes | str | int) -> tuple[int, bytes]:
    """A group 0000 element's value as written: a ``str`` as a UID (NUL-padded), an ``int``
    as US; ``bytes`` are taken as already padded."""
    if isinstance(value, int):
        return element, struct.pack("<H", value)
    if isinstance(value, str):
        return element, padded("UI", value.encode("ascii"))
    return element, value


def command_set(elements: list[tuple[int, bytes]]) -> bytes:
    """A DIMSE command set (always implicit VR little endian, PS3.7 6.3.1) with its group length."""
    body = b"".join(struct.pack("<HHL", 0x0000, element, len(value)) + value for element, value in elements)
    return struct.pack("<HHLL", 0x0000, 0x0000, 4, len(body)) + body


def find_response_command(sop_class_uid: str, message_id: int, status: int, has_dataset: bool) -> bytes:
    """A C-FIND-RSP command set."""
    return command_set(
        [
            command_element(0x0002, sop_class_uid),
            command_element(0x0100, C_FIND_RSP),
            command_element(0x0120, message_id),
            command_element(0x0800, DATASET_PRESENT if has_dataset else NO_DATASET),
            command_element(0x0900, status),
        ]
    )


def _pdvs(context_id: int, payload: bytes, last: int, more: int, room: int) -> Iterator[bytes]:
    """``payload`` as PDV items of at most ``room`` bytes of data each (the last one flagged)."""
    for start in range(0, max(len(payload), 1), room):
        chunk = payload[start : start + room]
        control = last if start + room >= len(payload) else more
        yield struct.pack(">LBB", len(chunk) + 2, context_id, control) + chunk


def message_pdus(context_id: int, command: bytes, dataset: bytes, max_pdu_length: int) -> bytes:
    """One DIMSE message as P-DATA-TF PDUs no longer than the peer accepts.

    The command and a data set that fit together share one PDU (PS3.8 9.3.5 allows several
    PDVs per PDU): half the PDUs a client has to read, for every answer of a long C-FIND.
    """
    room = (max_pdu_length or 1 << 31) - PDV_HEADER
    items = list(_pdvs(context_id, command, COMMAND_LAST, 0x01, room))
    if dataset:
        items += _pdvs(context_id, dataset, DATASET_LAST, DATASET_MORE, room)
    out = bytearray()
    pending = bytearray()
    for item in items:
        if pending and len(pending) + len(item) > room + PDV_HEADER:
            out += struct.pack(">BBL", 0x04, 0, len(pending)) + pending
            pending = bytearray()
        pending += item
    out += struct.pack(">BBL", 0x04, 0, len(pending)) + pending
    return bytes(out)
