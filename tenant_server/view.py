"""What a tenant may see: Orthanc labels under the plugin's All/Any/None constraint.

Like the official plugin, the labels are checked on the resource at the query or
retrieve level. Below that level this project adds one rule the plugin lacks: a child
(series or instance) that carries labels but does not satisfy this tenant's constraint
belongs to someone else and is neither counted nor sent. Unlabelled children follow
their parent, so data labelled only at study level (``LabelsStoreLevels: ["Study"]``)
still moves whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class LabelView:
    labels: tuple[str, ...]
    constraint: str = "All"

    def find_filter(self) -> dict[str, Any]:
        """The ``/tools/find`` fields that restrict a search to this view."""
        if not self.labels:
            return {}  # AllowEmptyLabels: the whole archive, as the plugin does
        return {"Labels": list(self.labels), "LabelsConstraint": self.constraint}

    def matches(self, resource_labels: Iterable[str]) -> bool:
        """Whether a resource with these labels is in the view at its own level."""
        if not self.labels:
            return True
        present = set(resource_labels) & set(self.labels)
        if self.constraint == "All":
            return len(present) == len(self.labels)
        if self.constraint == "Any":
            return bool(present)
        return not present

    def child_visible(self, child_labels: Iterable[str]) -> bool:
        """A child below the retrieve level: unlabelled follows its parent, labelled must match."""
        labels = list(child_labels)
        return not labels or self.matches(labels)

    def may_attach(self, resource_labels: Iterable[str]) -> bool:
        """Whether a C-STORE may add to an existing resource carrying these labels.

        For All/Any that is "the resource is in the view". A None view stores with labels
        it cannot see, so for it the resource must already carry every one of them
        (it is data this tenant stored before).
        """
        labels = set(resource_labels)
        if self.constraint == "None" and self.labels:
            return set(self.labels) <= labels
        return self.matches(labels)
