"""Names and labels of the children, derived from the resource name and the AE title.

AE titles may hold upper case, spaces and punctuation; Service names must be DNS-1035
labels of at most 63 characters and label values at most 63 characters too. Readable names
are kept whenever they are valid and unambiguous; otherwise a short hash of the original
keeps them unique and stable (a child must keep its name for as long as its AET exists,
since a Deployment's selector can never change).
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from mtdicom_operator.crd import GROUP

APP_NAME: Final = "multitenant-dicom"
COMPONENT: Final = "tenant-server"
MANAGED_BY: Final = "mtdicom-operator"

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_VERSION: Final = "app.kubernetes.io/version"
LABEL_SERVER: Final = f"{GROUP}/server"

ANNOTATION_AET: Final = f"{GROUP}/aet"
ANNOTATION_CONFIG_HASH: Final = f"{GROUP}/config-hash"
ANNOTATION_LAST_APPLIED: Final = f"{GROUP}/last-applied"

_DNS_1035: Final = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE: Final = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
MAX_NAME: Final = 63


def short_hash(*parts: str, length: int = 8) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:length]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def child_name(resource_name: str, aet: str) -> str:
    """The name shared by a server's ConfigMap, Deployment and Service."""
    slug = _slug(aet) or "server"
    readable = f"{resource_name}-{slug}"
    if _DNS_1035.match(readable) and len(readable) <= MAX_NAME and aet.lower() == slug:
        return readable
    suffix = short_hash(resource_name, aet)
    prefix = _slug(readable)[: MAX_NAME - len(suffix) - 1].strip("-")
    if not prefix or not prefix[0].isalpha():
        prefix = ("s-" + prefix)[: MAX_NAME - len(suffix) - 1].strip("-")
    return f"{prefix}-{suffix}"


def label_value(text: str) -> str:
    """``text`` if it is a valid label value, else a truncated form with a hash."""
    if len(text) <= MAX_NAME and _LABEL_VALUE.match(text):
        return text
    suffix = short_hash(text)
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[: MAX_NAME - len(suffix) - 1]
    cleaned = cleaned.strip("-_.")
    return f"{cleaned}-{suffix}" if cleaned else suffix


def selector_labels(resource_name: str, aet: str) -> dict[str, str]:
    """Labels that select one server's pods; never change them (Deployment selectors are immutable)."""
    return {
        LABEL_NAME: APP_NAME,
        LABEL_INSTANCE: label_value(resource_name),
        LABEL_SERVER: child_name(resource_name, aet),
    }


def owner_selector(resource_name: str) -> dict[str, str]:
    """Labels that every child of one resource carries, to list them."""
    return {LABEL_MANAGED_BY: MANAGED_BY, LABEL_INSTANCE: label_value(resource_name)}


def child_labels(resource_name: str, aet: str, version: str | None) -> dict[str, str]:
    labels = {
        **selector_labels(resource_name, aet),
        LABEL_COMPONENT: COMPONENT,
        LABEL_PART_OF: APP_NAME,
        LABEL_MANAGED_BY: MANAGED_BY,
    }
    if version and len(version) <= MAX_NAME and _LABEL_VALUE.match(version):
        labels[LABEL_VERSION] = version
    return labels


def image_version(image: str) -> str | None:
    """The tag of an image reference, if any (``repo:tag`` or ``repo:tag@sha256:...``)."""
    reference = image.split("@", 1)[0]
    last = reference.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def selector_string(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
