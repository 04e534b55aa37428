"""Between DICOM query identifiers and Orthanc's ``/tools/find``.

Reads a C-FIND/C-MOVE/C-GET identifier into matching constraints and return keys, and
turns Orthanc's string values back into DICOM elements of the right VR and character set.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pydicom import config, datadict
from pydicom.charset import python_encoding
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

QR_LEVELS = {
    "PATIENT": "Patient",
    "STUDY": "Study",
    "SERIES": "Series",
    "IMAGE": "Instance",
    "INSTANCE": "Instance",
}
LEVEL_ORDER = ("Patient", "Study", "Series", "Instance")

PATIENT_ID = Tag(0x0010, 0x0020)
PATIENT_NAME = Tag(0x0010, 0x0010)
STUDY_UID = Tag(0x0020, 0x000D)
SERIES_UID = Tag(0x0020, 0x000E)
SOP_UID = Tag(0x0008, 0x0018)
SOP_CLASS_UID = Tag(0x0008, 0x0016)
ACCESSION_NUMBER = Tag(0x0008, 0x0050)
MODALITIES_IN_STUDY = Tag(0x0008, 0x0061)
SOP_CLASSES_IN_STUDY = Tag(0x0008, 0x0062)
QUERY_LEVEL = Tag(0x0008, 0x0052)
CHARSET = Tag(0x0008, 0x0005)
RETRIEVE_AET = Tag(0x0008, 0x0054)
INSTANCE_AVAILABILITY = Tag(0x0008, 0x0056)
PATIENT_STUDIES = Tag(0x0020, 0x1200)
PATIENT_SERIES = Tag(0x0020, 0x1202)
PATIENT_INSTANCES = Tag(0x0020, 0x1204)
STUDY_SERIES = Tag(0x0020, 0x1206)
STUDY_INSTANCES = Tag(0x0020, 0x1208)
SERIES_INSTANCES = Tag(0x0020, 0x1209)

UNIQUE_KEY = {"Patient": PATIENT_ID, "Study": STUDY_UID, "Series": SERIES_UID, "Instance": SOP_UID}
# Counts and lists this server computes within the tenant's view (never Orthanc's global ones).
COMPUTED = {
    MODALITIES_IN_STUDY,
    SOP_CLASSES_IN_STUDY,
    PATIENT_STUDIES,
    PATIENT_SERIES,
    PATIENT_INSTANCES,
    STUDY_SERIES,
    STUDY_INSTANCES,
    SERIES_INSTANCES,
}
# Keys that describe the request or answer rather than the data: never matched.
NOT_MATCHED = {QUERY_LEVEL, CHARSET, RETRIEVE_AET, INSTANCE_AVAILABILITY, Tag(0x0008, 0x0053)}
TEXT_VRS = {
    "AE",
    "AS",
    "CS",
    "DA",
    "DS",
    "DT",
    "IS",
    "LO",
    "LT",
    "PN",
    "SH",
    "ST",
    "TM",
    "UC",
    "UI",
    "UR",
    "UT",
}
WILDCARD_VRS = {"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"}
INT_VRS = {"US", "UL", "SS", "SL", "UV", "SV"}
FLOAT_VRS = {"FL", "FD"}


class IdentifierError(ValueError):
    """The identifier cannot be used: answered with 0xA900 or 0xC000, never a crash."""


@dataclass
class Query:
    """A parsed query identifier."""

    level: str  # Orthanc level: Patient, Study, Series, Instance
    qr_level: str  # as the SCU sent it, echoed in answers
    constraints: dict[BaseTag, str] = field(default_factory=dict)
    return_keys: dict[BaseTag, str] = field(default_factory=dict)  # tag -> VR, in request order
    charset: list[str] = field(default_factory=list)

    def constraint_vr(self, tag: BaseTag) -> str:
        return self.return_keys.get(tag, "UN")


def hex_tag(tag: BaseTag) -> str:
    return f"{tag.group:04x},{tag.element:04x}"


def element_vr(elem: DataElement) -> str:
    vr = str(elem.VR)
    if vr in ("UN", "") or " or " in vr:
        try:
            vr = datadict.dictionary_VR(elem.tag)
        except KeyError:
            return "UN"
        vr = vr.split(" or ")[0]
    return vr


def element_text(elem: DataElement) -> str:
    """The element's value as the string Orthanc matches on ('' when empty)."""
    value = elem.value
    if value is None or value == "" or value == b"":
        return ""
    if isinstance(value, bytes):
        raise IdentifierError(f"binary value in matching key {elem.tag}")
    if isinstance(value, MultiValue | list | tuple):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def parse_query(identifier: Dataset | None, default_level: str | None = None) -> Query:
    """Read an identifier; ``default_level`` is used by C-MOVE/C-GET when none is given."""
    if identifier is None:
        raise IdentifierError("no identifier")
    try:
        raw_level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
        charset = identifier.get("SpecificCharacterSet", [])
    except Exception as exc:  # pydicom decodes lazily: a broken element surfaces here
        raise IdentifierError(f"cannot decode identifier: {exc}") from exc
    if not raw_level and default_level:
        raw_level = default_level
    level = QR_LEVELS.get(raw_level)
    if level is None:
        raise IdentifierError(
            f"QueryRetrieveLevel must be PATIENT, STUDY, SERIES or IMAGE, got {raw_level!r}"
        )
    query = Query(
        level=level,
        qr_level=raw_level,
        charset=[charset] if isinstance(charset, str) else list(charset),
    )
    try:
        elements = list(identifier)
    except Exception as exc:
        raise IdentifierError(f"cannot decode identifier: {exc}") from exc
    for elem in elements:
        tag = elem.tag
        if tag == INSTANCE_AVAILABILITY:
            query.return_keys[tag] = "CS"
        if tag.group < 0x0008 or tag.element == 0x0000 or tag in NOT_MATCHED:
            continue
        try:
            vr = element_vr(elem)
            query.return_keys[tag] = vr
            if vr == "SQ" or tag in COMPUTED - {MODALITIES_IN_STUDY}:
                continue
            text = element_text(elem)
        except IdentifierError:
            raise
        except Exception as exc:
            raise IdentifierError(f"cannot decode element {tag}: {exc}") from exc
        if text and text.strip("*") != "":
            query.constraints[tag] = text
    return query


def pattern_matches(pattern: str, value: str | None, vr: str, case_sensitive: bool) -> bool:
    """DICOM single-value, list and wildcard matching of one value (ranges are not re-checked)."""
    if value is None:
        return False
    if not case_sensitive:
        pattern, value = pattern.upper(), value.upper()
    for alternative in pattern.split("\\"):
        if vr in ("DA", "TM", "DT") and "-" in alternative:
            return True  # ranges are case-free: Orthanc's answer already holds
        if vr in WILDCARD_VRS and ("*" in alternative or "?" in alternative):
            regex = fnmatch.translate(alternative.replace("[", "[[]"))
            if re.match(regex, value, re.S):
                return True
        elif alternative == value or alternative in value.split("\\"):
            return True
    return False


# --- answers ---------------------------------------------------------------------------


def to_element(tag: BaseTag, vr: str, text: str | None) -> DataElement:
    """A DICOM element from Orthanc's string value; unknown or binary values come back empty."""
    if vr == "SQ":
        return DataElement(tag, "SQ", Sequence())
    if not text:
        return DataElement(tag, vr if vr != "UN" else "UN", None)
    if vr in TEXT_VRS:
        return DataElement(tag, vr, text)
    parts = text.split("\\")
    try:
        if vr in INT_VRS:
            numbers: list[int] | list[float] = [int(p) for p in parts]
        elif vr in FLOAT_VRS:
            numbers = [float(p) for p in parts]
        else:
            return DataElement(tag, vr, None)
    except ValueError:
        return DataElement(tag, vr, None)
    return DataElement(tag, vr, numbers[0] if len(numbers) == 1 else numbers)


def answer_charset(requested: list[str], values: Iterable[str]) -> str | None:
    """The request's character set when it can carry every value, else UTF-8.

    ASCII-only answers need no declaration; otherwise no character is ever lost.
    """
    texts = [v for v in values if v]
    if all(v.isascii() for v in texts):
        return requested[0] if len(requested) == 1 and requested[0] else None
    if len(requested) == 1 and requested[0]:
        codec = python_encoding.get(requested[0])
        if codec:
            try:
                for v in texts:
                    v.encode(codec)
                return requested[0]
            except UnicodeEncodeError:
                pass
    return "ISO_IR 192"


@dataclass(frozen=True)
class Answer:
    """One C-FIND answer as (tag, VR, Orthanc's text value) triples, in no particular order."""

    charset: str | None
    elements: list[tuple[BaseTag, str, str | None]]


def answer_elements(query: Query, values: Mapping[BaseTag, str | None], retrieve_aet: str) -> Answer:
    """Every requested key (empty when unknown) plus the level keys an SCU needs to drill down."""
    charset = answer_charset(query.charset, [v for v in values.values() if isinstance(v, str)])
    elements: dict[BaseTag, tuple[str, str | None]] = {}
    if charset:
        elements[CHARSET] = ("CS", charset)
    elements[QUERY_LEVEL] = ("CS", query.qr_level)
    elements[RETRIEVE_AET] = ("AE", retrieve_aet)
    for tag, vr in query.return_keys.items():
        elements[tag] = (vr, values.get(tag))
    if INSTANCE_AVAILABILITY in query.return_keys:
        elements[INSTANCE_AVAILABILITY] = ("CS", "ONLINE")
    for tag in parent_keys(query.level):
        if tag not in elements:
            elements[tag] = (datadict.dictionary_VR(tag), values.get(tag))
    return Answer(charset, [(tag, vr, text) for tag, (vr, text) in elements.items()])


def build_answer(answer: Answer) -> Dataset:
    """The answer as a pydicom data set (for pynetdicom to encode).

    Values come from Orthanc, which validated them on the way in; re-validating each one
    in pydicom was a third of the cost of a large answer.
    """
    ds = Dataset()
    with config.disable_value_validation():
        for tag, vr, text in answer.elements:
            ds[tag] = to_element(tag, vr, text)
    return ds


def parent_keys(level: str) -> list[BaseTag]:
    """Unique keys of this level and the levels above: what an SCU needs to drill down."""
    return [UNIQUE_KEY[lvl] for lvl in LEVEL_ORDER[: LEVEL_ORDER.index(level) + 1]]
