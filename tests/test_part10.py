"""The Part 10 file sent to Orthanc: the file meta pydicom would write, then the data set as received."""

from __future__ import annotations

from io import BytesIO

import pytest
from local_orthanc.synthetic import StudySpec, make_instance
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom.dsutils import create_file_meta, encode_file_meta

from tenant_server.part10 import file_meta

CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.mark.parametrize("sop_uid", ["1.2.3.4", "1.2.3.45", "1.2.826.0.1.3680043.8.498.1" + "2" * 35])
@pytest.mark.parametrize("aet", ["", "MOD", "MODALITY", "SIXTEEN_CHARS_AE"])
@pytest.mark.parametrize(
    "syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]
)
def test_file_meta_is_what_pydicom_writes(sop_uid: str, aet: str, syntax: str) -> None:
    """Odd and even UIDs and AE titles, with and without the source AE."""
    meta = create_file_meta(sop_class_uid=CT, sop_instance_uid=sop_uid, transfer_syntax=syntax)
    if aet:
        meta.SourceApplicationEntityTitle = aet
    expected = b"\x00" * 128 + b"DICM" + encode_file_meta(meta)
    assert file_meta(CT, sop_uid, syntax, aet) == expected


def test_file_reads_back_with_its_source() -> None:
    """Meta plus a data set as it came off the wire (implicit VR) is a file pydicom reads whole."""
    source = make_instance(StudySpec(), "1.2.3", 1, 1)
    body = DicomBytesIO()
    body.is_implicit_VR, body.is_little_endian = True, True
    write_dataset(body, source)
    raw = body.getvalue()
    assert not raw.startswith(b"\x00" * 128)  # the bare data set, as pynetdicom hands it over
    read = dcmread(
        BytesIO(file_meta(source.SOPClassUID, source.SOPInstanceUID, ImplicitVRLittleEndian, "CT1") + raw)
    )
    assert read.file_meta.SourceApplicationEntityTitle == "CT1"
    assert read.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert read.SOPInstanceUID == source.SOPInstanceUID
    assert read.PixelData == source.PixelData


def test_an_aet_outside_the_default_repertoire_is_left_out() -> None:
    assert file_meta(CT, "1.2.3", ImplicitVRLittleEndian, "MODALITÉ") == file_meta(
        CT, "1.2.3", ImplicitVRLittleEndian, ""
    )
