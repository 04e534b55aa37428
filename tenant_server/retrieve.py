"""C-MOVE and C-GET: which instances an identifier names within the tenant's view.

Retrieval keys are unique keys (PS3.4 C.4.2.2.1): single values or lists of UIDs, no
wildcards, so ``PatientID=*`` cannot push a tenant's whole archive somewhere. The
resource is matched at its level under the view, then its children follow the view's
child rule. Instances are streamed from Orthanc through pynetdicom, which reports real
per-instance sub-operation counts (the plugin reports one).
"""

from __future__ import annotations

from typing import Any

from pydicom.tag import BaseTag

from tenant_server.hierarchy import Hierarchy, InstanceRef
from tenant_server.identifiers import (
    ACCESSION_NUMBER,
    LEVEL_ORDER,
    UNIQUE_KEY,
    IdentifierError,
    Query,
    hex_tag,
)
from tenant_server.orthanc import OrthancClient
from tenant_server.view import LabelView

WILDCARDS = ("*", "?")


def retrieve_constraints(query: Query) -> dict[BaseTag, str]:
    """The unique keys of the query level and above, checked for retrieval use."""
    keys = {}
    for level in LEVEL_ORDER[: LEVEL_ORDER.index(query.level) + 1]:
        tag = UNIQUE_KEY[level]
        if tag in query.constraints:
            keys[tag] = query.constraints[tag]
    own = UNIQUE_KEY[query.level]
    if own not in keys and query.level == "Study" and ACCESSION_NUMBER in query.constraints:
        keys[ACCESSION_NUMBER] = query.constraints[ACCESSION_NUMBER]
    elif own not in keys:
        raise IdentifierError(f"a {query.qr_level} retrieve needs {own} in the identifier")
    for tag, value in keys.items():
        if any(w in value for w in WILDCARDS):
            raise IdentifierError(f"wildcards are not allowed in retrieve key {tag}")
    return keys


class Retriever:
    def __init__(self, client: OrthancClient, view: LabelView) -> None:
        self.client = client
        self.view = view
        self.hierarchy = Hierarchy(client, view)

    def _match(self, level: str, keys: dict[BaseTag, str], content: list[str]) -> list[dict[str, Any]]:
        return self.client.find(
            {
                "Level": level,
                "Query": {hex_tag(t): v for t, v in keys.items()},
                "CaseSensitive": True,
                "Short": True,
                "RequestedTags": [hex_tag(UNIQUE_KEY[level])],
                "ResponseContent": content,
                **self.view.find_filter(),
            }
        )

    def resolve(self, query: Query) -> list[InstanceRef]:
        """Every instance to send, in series then instance order as Orthanc lists them."""
        keys = retrieve_constraints(query)
        if query.level in ("Patient", "Study"):
            # A patient is retrieved through its studies in this view, never through the
            # shared Orthanc patient (which may hold other tenants' studies).
            studies = self._match("Study", keys, ["RequestedTags"])
            uid = hex_tag(UNIQUE_KEY["Study"])
            return self.hierarchy.instances_of_studies(
                {s["ID"]: s.get("RequestedTags", {}).get(uid, "") for s in studies}
            )
        if query.level == "Series":
            series = self._match("Series", keys, ["RequestedTags"])
            uid = hex_tag(UNIQUE_KEY["Series"])
            parents = {s["ID"]: s.get("RequestedTags", {}).get(uid, "") for s in series}
            return self.hierarchy.instances_of_series(parents, parents, "Series")
        instances = self._match("Instance", keys, ["Parent", "Metadata"])
        return [
            InstanceRef(
                id=item["ID"],
                series_id=item.get("ParentSeries", ""),
                sop_class_uid=item.get("Metadata", {}).get("SopClassUid", ""),
                transfer_syntax=item.get("Metadata", {}).get("TransferSyntax", ""),
            )
            for item in instances
        ]
