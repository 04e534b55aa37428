"""C-FIND answers encoded without pydicom: the same bytes pydicom and pynetdicom would send."""

from __future__ import annotations

import struct
from io import BytesIO

import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.tag import Tag
from pynetdicom.dimse_messages import C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND

from tenant_server.answer_encoding import encode_answer, find_response_command, message_pdus
from tenant_server.identifiers import Answer, answer_elements, build_answer, parse_query
from tests.helpers.dicom import identifier

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"


def pydicom_bytes(answer: Answer, implicit: bool) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_implicit_VR = implicit
    buffer.is_little_endian = True
    write_dataset(buffer, build_answer(answer))
    return buffer.getvalue()


def study_answer(values: dict[str, str | None], charset: str | None = None, **keys: str) -> Answer:
    query = identifier(
        "STUDY",
        PatientName="",
        PatientID="",
        StudyInstanceUID="",
        StudyDate="",
        ModalitiesInStudy="",
        NumberOfStudyRelatedInstances="",
        ReferencedStudySequence=[],
        **keys,
    )
    if charset:
        query.SpecificCharacterSet = charset
    parsed = parse_query(query)
    return answer_elements(parsed, {Tag(k): v for k, v in values.items()}, "OURS")


ANSWERS = {
    "ascii, odd lengths": study_answer(
        {
            "PatientName": "Doe^John",
            "PatientID": "P1",
            "StudyInstanceUID": "1.2.3",
            "StudyDate": "20230101",
            "ModalitiesInStudy": "CT\\MR",
            "NumberOfStudyRelatedInstances": "7",
        }
    ),
    "unknown values come back empty": study_answer({"StudyInstanceUID": "1.2.34"}),
    "latin-1 caller": study_answer({"PatientName": "Müller^Jürgen", "StudyInstanceUID": "1.2"}, "ISO_IR 100"),
    "utf-8 when the caller's set cannot carry it": study_answer(
        {"PatientName": "山田^太郎", "StudyInstanceUID": "1.2"}, "ISO_IR 100"
    ),
    "binary VR from Orthanc text": answer_elements(
        parse_query(identifier("IMAGE", SOPInstanceUID="", Rows=None, Columns=None, FrameTime=None)),
        {Tag("Rows"): "512", Tag("Columns"): "not a number", Tag("SOPInstanceUID"): "1.2.3.4"},
        "OURS",
    ),
}


@pytest.mark.parametrize("implicit", [True, False])
@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_data_set_bytes_equal_pydicom(name: str, implicit: bool) -> None:
    assert encode_answer(ANSWERS[name], implicit) == pydicom_bytes(ANSWERS[name], implicit)


def test_code_extensions_are_left_to_pydicom() -> None:
    answer = study_answer({"PatientName": "Yamada^Tarou", "StudyInstanceUID": "1.2"}, "ISO 2022 IR 87")
    assert answer.charset == "ISO 2022 IR 87"
    assert encode_answer(answer, True) is None


def pdus(stream: bytes) -> list[tuple[int, list[tuple[int, int, bytes]]]]:
    """(PDU length, [(context, control, data)]) of every P-DATA-TF in ``stream``."""
    out = []
    while stream:
        kind, length = stream[0], struct.unpack(">L", stream[2:6])[0]
        assert kind == 0x04
        body, stream = stream[6 : 6 + length], stream[6 + length :]
        items = []
        while body:
            size = struct.unpack(">L", body[:4])[0]
            items.append((body[4], body[5], body[6 : 4 + size]))
            body = body[4 + size :]
        out.append((length, items))
    return out


def test_command_and_data_set_equal_pynetdicom_message() -> None:
    dataset = encode_answer(ANSWERS["ascii, odd lengths"], True)
    assert dataset is not None
    primitive = C_FIND()
    primitive.MessageIDBeingRespondedTo = 11
    primitive.AffectedSOPClassUID = STUDY_ROOT_FIND
    primitive.Status = 0xFF00
    primitive.Identifier = BytesIO(dataset)
    message = C_FIND_RSP()
    message.primitive_to_message(primitive)
    theirs = [pdv for p in message.encode_msg(5, 16384) for pdv in p.presentation_data_value_list]
    ours = pdus(message_pdus(5, find_response_command(STUDY_ROOT_FIND, 11, 0xFF00, True), dataset, 16384))
    assert len(ours) == 1  # command and data set share one PDU
    assert [(5, bytes([control]) + data) for _, items in ours for (_, control, data) in items] == [
        (context, bytes(value)) for context, value in theirs
    ]


@pytest.mark.parametrize("max_pdu", [16, 40, 64, 100, 0])
def test_fragments_fit_the_peer_maximum(max_pdu: int) -> None:
    dataset = encode_answer(ANSWERS["latin-1 caller"], False)
    assert dataset is not None
    command = find_response_command(STUDY_ROOT_FIND, 3, 0xFF00, True)
    received = pdus(message_pdus(1, command, dataset, max_pdu))
    assert all(length <= (max_pdu or length) for length, _ in received)
    items = [item for _, pdu_items in received for item in pdu_items]
    commands = [(control, data) for _, control, data in items if control & 1]
    datasets = [(control, data) for _, control, data in items if not control & 1]
    assert b"".join(d for _, d in commands) == command and b"".join(d for _, d in datasets) == dataset
    assert [c for c, _ in commands] == [0x01] * (len(commands) - 1) + [0x03]
    assert [c for c, _ in datasets] == [0x00] * (len(datasets) - 1) + [0x02]
    assert items.index(next(i for i in items if not i[1] & 1)) == len(commands)  # command first
