"""C-STORE-RSP command sets encoded without pydicom: the bytes pynetdicom would send."""

from __future__ import annotations

import pytest
from pydicom.tag import Tag
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode

from tenant_server.store_response import store_response_command

CT = "1.2.840.10008.5.1.4.1.1.2"


def response(status: int, comment: str | None = None, sop_uid: str = "1.2.3.4.5") -> C_STORE:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = 65535
    rsp.AffectedSOPClassUID = CT
    rsp.AffectedSOPInstanceUID = sop_uid
    rsp.Status = status
    if comment is not None:
        rsp.ErrorComment = comment
    return rsp


def pynetdicom_bytes(rsp: C_STORE) -> bytes:
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    return bytes(encode(message.command_set, True, True))


@pytest.mark.parametrize(
    ("status", "comment", "sop_uid"),
    [
        (0x0000, None, "1.2.3.4.5"),
        (0x0000, None, "1.2.3.4.56"),
        (0x0124, "isolation: the study belongs to another tenant", "1.2.3"),
        (0xA700, "Orthanc unreachable: Failed to connect", "1.2.3.4"),
        (0xC000, "x", "1.2"),
        (0xB007, "coerced", "1.2.826.0.1.3680043.8.498.12345678901234567890123456789012345678"),
    ],
)
def test_same_bytes_as_pynetdicom(status: int, comment: str | None, sop_uid: str) -> None:
    rsp = response(status, comment, sop_uid)
    assert store_response_command(rsp) == pynetdicom_bytes(rsp)


def test_unusual_responses_are_left_to_pynetdicom() -> None:
    with_offender = response(0xA900)
    with_offender.OffendingElement = [Tag(0x0008, 0x0018)]
    assert store_response_command(with_offender) is None
    assert store_response_command(response(0xC000, "données illisibles")) is None
    without_uid = response(0x0000)
    without_uid.AffectedSOPInstanceUID = None
    assert store_response_command(without_uid) is None
