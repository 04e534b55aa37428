"""Create-or-patch without server-side apply: JSON merge patches computed client-side.

Server-side apply would be the modern choice, but the emulator the operator is tested
against has neither SSA nor PUT, and a merge patch works on every API server. A plain merge
patch of the desired object cannot *remove* a field the operator set earlier (a Service
annotation, ``loadBalancerSourceRanges`` after switching to ClusterIP), so, like
``kubectl apply``'s client-side mode, the last applied manifest is kept in an annotation and
keys that disappeared from it are deleted (``null``) in the next patch.

Lists are replaced whole (merge-patch semantics), and a list is only re-sent when the live
one does not contain what we want, so fields the API server defaults inside containers do
not cause a patch on every reconciliation.
"""

from __future__ import annotations

import json
from typing import Any

from mtdicom_operator.naming import ANNOTATION_LAST_APPLIED

Manifest = dict[str, Any]


def contains(live: Any, desired: Any) -> bool:
    """Whether ``live`` already has everything ``desired`` asks for (extra live fields are fine)."""
    if isinstance(desired, dict):
        return isinstance(live, dict) and all(k in live and contains(live[k], v) for k, v in desired.items())
    if isinstance(desired, list):
        return isinstance(live, list) and len(live) == len(desired) and all(map(contains, live, desired))
    return bool(live == desired and type(live) is type(desired))


def with_last_applied(desired: Manifest) -> Manifest:
    """``desired`` carrying itself, as applied, in an annotation (for the next patch's deletions)."""
    text = json.dumps(desired, sort_keys=True, separators=(",", ":"))
    metadata = dict(desired["metadata"])
    metadata["annotations"] = {**metadata.get("annotations", {}), ANNOTATION_LAST_APPLIED: text}
    return {**desired, "metadata": metadata}


def last_applied(live: Manifest) -> Manifest:
    text = (live.get("metadata", {}).get("annotations") or {}).get(ANNOTATION_LAST_APPLIED)
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def merge_patch(live: Any, desired: Any, previous: Any) -> dict[str, Any]:
    """The RFC 7386 merge patch turning ``live`` into something that contains ``desired``.

    ``previous`` is what we applied last time: its keys missing from ``desired`` are removed
    if they are still live. Keys nobody of us ever set (API server defaults, other
    controllers' fields) are left alone. An empty result means nothing to do.
    """
    patch: dict[str, Any] = {}
    live = live if isinstance(live, dict) else {}
    previous = previous if isinstance(previous, dict) else {}
    for key in previous:
        if key not in desired and key in live:
            patch[key] = None
    for key, value in desired.items():
        current = live.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            sub = merge_patch(current, value, previous.get(key))
            if sub:
                patch[key] = sub
        elif not contains(current, value) or (isinstance(value, dict) and not isinstance(current, dict)):
            patch[key] = value
    return patch


def patch_for(live: Manifest, desired: Manifest) -> dict[str, Any]:
    """The patch that brings a live child to ``desired`` (which already carries last-applied)."""
    previous = last_applied(live)
    return merge_patch(live, desired, previous)


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 applied locally (tests use it to check a patch does what it claims)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result
