"""A received C-STORE data set as a DICOM Part 10 file, for ``POST /instances``.

The file meta group is written here rather than through pydicom (pynetdicom's
``Event.encoded_dataset``): it is seven short elements of known VRs, and building and
encoding a pydicom ``FileMetaDataset`` cost about 0.2 ms of CPU per instance, 5 % of the
server's share of a C-STORE. The bytes are what pydicom writes for the same elements
(``tests/test_part10.py``).

The meta group also records the calling AE as *Source Application Entity Title*: Orthanc
keeps the file as sent, so an administrator can read from ``/instances/{id}/header`` which
modality an instance came from (the official plugin records neither AET nor IP).
"""

from __future__ import annotations

import struct

from pynetdicom import PYNETDICOM_IMPLEMENTATION_UID, PYNETDICOM_IMPLEMENTATION_VERSION

from tenant_server.answer_encoding import element_header, padded

PREAMBLE = b"\x00" * 128 + b"DICM"


def _element(element: int, vr: str, value: bytes) -> bytes:
    """One explicit VR little endian element of group 0002, padded to an even length."""
    value = padded(vr, value)
    return element_header(0x00020000 | element, vr, len(value), implicit=False) + value


def file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str, source_aet: str) -> bytes:
    """The preamble, ``DICM`` and the file meta group of a data set received over DICOM.

    An AE title outside the default repertoire (a misbehaving peer) is left out rather than
    refusing the instance; UIDs outside it raise ``UnicodeEncodeError`` (the data set is bad).
    """
    if not source_aet.isascii():
        source_aet = ""
    elements = b"".join(
        (
            _element(0x0001, "OB", b"\x00\x01"),
            _element(0x0002, "UI", sop_class_uid.encode("ascii")),
            _element(0x0003, "UI", sop_instance_uid.encode("ascii")),
            _element(0x0010, "UI", transfer_syntax.encode("ascii")),
            _element(0x0012, "UI", PYNETDICOM_IMPLEMENTATION_UID.encode("ascii")),
            _element(0x0013, "SH", PYNETDICOM_IMPLEMENTATION_VERSION.encode("ascii")),
            _element(0x0016, "AE", source_aet.encode("ascii")) if source_aet else b"",
        )
    )
    return PREAMBLE + _element(0x0000, "UL", struct.pack("<I", len(elements))) + elements
