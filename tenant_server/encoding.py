"""Checks that an encoded identifier is complete before pydicom reads it.

pydicom reads leniently: an element whose length runs past the end of the data, or a
header cut short, is silently dropped or shortened, and a query would then run on what
is left (a truncated PatientID matching more than the caller asked for). PS3.4 wants
such an identifier refused (0xA900 for C-FIND), so the raw bytes are walked first.
"""

from __future__ import annotations

import struct
import zlib

UNDEFINED = 0xFFFFFFFF
ITEM = (0xFFFE, 0xE000)
ITEM_END = (0xFFFE, 0xE00D)
SEQUENCE_END = (0xFFFE, 0xE0DD)
# Explicit VRs with a reserved 2-byte field and a 4-byte length (PS3.5 7.1.2).
LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
MAX_DEPTH = 16


class IncompleteEncoding(ValueError):
    """The bytes do not form a whole data set in the negotiated transfer syntax."""


class _Walker:
    def __init__(self, data: bytes, implicit: bool, little: bool) -> None:
        self.data = data
        self.implicit = implicit
        self.order = "<" if little else ">"

    def _unpack(self, fmt: str, pos: int) -> tuple[int, ...]:
        size = struct.calcsize(self.order + fmt)
        if pos + size > len(self.data):
            raise IncompleteEncoding(f"element header cut short at byte {pos}")
        return struct.unpack_from(self.order + fmt, self.data, pos)

    def _header(self, pos: int) -> tuple[tuple[int, int], int, int]:
        """Tag, value length and header size of the element at ``pos``."""
        group, elem = self._unpack("HH", pos)
        if self.implicit or group == 0xFFFE:
            (length,) = self._unpack("L", pos + 4)
            return (group, elem), length, 8
        vr = self.data[pos + 4 : pos + 6]
        if len(vr) < 2 or not vr.isalpha() or not vr.isupper():
            raise IncompleteEncoding(f"element ({group:04X},{elem:04X}) has no valid VR")
        if vr in LONG_VRS:
            (length,) = self._unpack("L", pos + 8)
            return (group, elem), length, 12
        (length,) = self._unpack("H", pos + 6)
        return (group, elem), length, 8

    def dataset(self, pos: int, end: int, depth: int, until_item_end: bool = False) -> int:
        """Walk elements from ``pos``; returns where the data set ends."""
        if depth > MAX_DEPTH:
            raise IncompleteEncoding("sequences nested too deeply")
        while pos < end:
            tag, length, header = self._header(pos)
            pos += header
            if tag == ITEM_END and until_item_end:
                return pos
            if length == UNDEFINED:
                pos = self.items(pos, end, depth + 1)
                continue
            if pos + length > end:
                raise IncompleteEncoding(
                    f"element ({tag[0]:04X},{tag[1]:04X}) is {length} bytes long, {end - pos} remain"
                )
            pos += length
        if until_item_end:
            raise IncompleteEncoding("item of undefined length has no delimiter")
        return pos

    def items(self, pos: int, end: int, depth: int) -> int:
        """Items of an undefined-length value, up to and including the sequence delimiter."""
        while pos < end:
            tag, length, header = self._header(pos)
            pos += header
            if tag == SEQUENCE_END:
                return pos
            if tag != ITEM:
                raise IncompleteEncoding(f"({tag[0]:04X},{tag[1]:04X}) where a sequence item belongs")
            if length == UNDEFINED:
                pos = self.dataset(pos, end, depth + 1, until_item_end=True)
            elif pos + length > end:
                raise IncompleteEncoding(f"sequence item is {length} bytes long, {end - pos} remain")
            else:
                pos += length
        raise IncompleteEncoding("value of undefined length has no sequence delimiter")


def verify_complete(raw: bytes, implicit: bool, little: bool, deflated: bool = False) -> None:
    """Raise ``IncompleteEncoding`` unless ``raw`` is a whole data set, every length in bounds."""
    if deflated:
        try:
            raw = zlib.decompress(raw, -zlib.MAX_WBITS)
        except zlib.error as exc:
            raise IncompleteEncoding(f"deflated data set cannot be inflated: {exc}") from exc
    _Walker(raw, implicit, little).dataset(0, len(raw), 0)
