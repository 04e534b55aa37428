"""The identifier completeness check, on data sets encoded by pydicom in every byte order and VR style."""

from __future__ import annotations

import struct
import zlib

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from tenant_server.encoding import IncompleteEncoding, verify_complete

STYLES = [(True, True), (False, True), (False, False)]


def encoded(ds: Dataset, implicit: bool, little: bool, undefined_lengths: bool = False) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_implicit_VR = implicit
    buffer.is_little_endian = little
    if undefined_lengths:
        for elem in ds.iterall():
            if elem.VR == "SQ":
                elem.is_undefined_length = True
                for item in elem.value:
                    item.is_undefined_length_sequence_item = True
    write_dataset(buffer, ds)
    return buffer.getvalue()


def query() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientName = "Doe^Jane"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.NumberOfStudyRelatedInstances = ""
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    nested = Dataset()
    nested.CodeValue = "ABC"
    item.ConceptNameCodeSequence = Sequence([nested])
    ds.ReferencedStudySequence = Sequence([item, Dataset()])
    return ds


@pytest.mark.parametrize("implicit,little", STYLES)
@pytest.mark.parametrize("undefined", [False, True])
def test_whole_data_sets_pass(implicit: bool, little: bool, undefined: bool) -> None:
    verify_complete(encoded(query(), implicit, little, undefined), implicit, little)


def test_empty_identifier_passes() -> None:
    verify_complete(b"", True, True)


def test_deflated_data_set_is_inflated_first() -> None:
    raw = encoded(query(), False, True)
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    verify_complete(packer.compress(raw) + packer.flush(), False, True, deflated=True)
    with pytest.raises(IncompleteEncoding, match="inflated"):
        verify_complete(b"not deflate", False, True, deflated=True)


@pytest.mark.parametrize("implicit,little", STYLES)
@pytest.mark.parametrize("undefined", [False, True])
def test_every_truncation_is_refused(implicit: bool, little: bool, undefined: bool) -> None:
    """Cutting a whole data set anywhere but between top-level elements is detected."""
    raw = encoded(query(), implicit, little, undefined)
    boundaries = {0, len(raw)}
    position = 0
    for elem in query():  # top-level element boundaries, where a cut leaves a whole (shorter) data set
        single = Dataset()
        single.add(elem)
        position += len(encoded(single, implicit, little, undefined))
        boundaries.add(position)
    for cut in range(1, len(raw)):
        if cut in boundaries:
            verify_complete(raw[:cut], implicit, little)
            continue
        with pytest.raises(IncompleteEncoding):
            verify_complete(raw[:cut], implicit, little)


def test_length_past_the_end_names_the_element() -> None:
    raw = struct.pack("<HHL", 0x0010, 0x0010, 4000) + b"Doe^J"
    with pytest.raises(IncompleteEncoding, match=r"\(0010,0010\) is 4000 bytes long, 5 remain"):
        verify_complete(raw, True, True)


def test_explicit_vr_must_be_letters() -> None:
    with pytest.raises(IncompleteEncoding, match="no valid VR"):
        verify_complete(struct.pack("<HH", 0x0010, 0x0010) + b"\x00\x01\x00\x00", False, True)


def test_undefined_length_without_delimiter_is_refused() -> None:
    raw = struct.pack("<HHL", 0x0008, 0x1110, 0xFFFFFFFF) + struct.pack("<HHL", 0xFFFE, 0xE000, 0)
    with pytest.raises(IncompleteEncoding, match="no sequence delimiter"):
        verify_complete(raw, True, True)


def test_nesting_bomb_is_refused_without_recursion_error() -> None:
    opening = struct.pack("<HHL", 0x0008, 0x1110, 0xFFFFFFFF) + struct.pack(
        "<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF
    )
    with pytest.raises(IncompleteEncoding, match="nested too deeply"):
        verify_complete(opening * 10_000, True, True)
