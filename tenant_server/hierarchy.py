"""The children of matched studies or series, as this tenant sees them.

C-FIND counts (NumberOfStudyRelatedInstances, ModalitiesInStudy, ...) and C-MOVE/C-GET
both need the series and instances below a set of resources, filtered by the view's
child rule (``LabelView.child_visible``). Two ``/tools/find`` calls serve a whole batch,
whatever the number of studies, instead of one call per study.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from tenant_server.orthanc import OrthancClient
from tenant_server.view import LabelView

BATCH = 200  # UIDs per list-matching query: keeps each SQL IN () and URL reasonable


@dataclass(frozen=True)
class InstanceRef:
    id: str
    series_id: str
    sop_class_uid: str
    transfer_syntax: str


@dataclass
class StudyStats:
    series: int = 0
    instances: int = 0
    modalities: list[str] = field(default_factory=list)
    sop_classes: list[str] = field(default_factory=list)


def _batches(values: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(values), BATCH):
        yield values[start : start + BATCH]


class Hierarchy:
    def __init__(self, client: OrthancClient, view: LabelView) -> None:
        self.client = client
        self.view = view

    def _find(self, level: str, key: str, uids: list[str], content: list[str]) -> list[dict]:
        results: list[dict] = []
        for chunk in _batches(sorted(set(uids))):
            results += self.client.find(
                {
                    "Level": level,
                    "Query": {key: "\\".join(chunk)},
                    "ResponseContent": content,
                    "Short": True,
                }
            )
        return results

    def series_of_studies(self, studies: dict[str, str]) -> list[dict]:
        """Visible series of the given studies (Orthanc ID -> StudyInstanceUID)."""
        found = self._find(
            "Series", "0020,000d", list(studies.values()), ["Labels", "Parent", "MainDicomTags"]
        )
        return [
            s
            for s in found
            if s.get("ParentStudy") in studies and self.view.child_visible(s.get("Labels", []))
        ]

    def instances_of_series(self, series_ids: Iterable[str], key: str, uids: list[str]) -> list[InstanceRef]:
        """Visible instances under the given series, found by a list of study or series UIDs."""
        wanted = set(series_ids)
        found = self._find("Instance", key, uids, ["Labels", "Parent", "Metadata"])
        refs = []
        for item in found:
            if item.get("ParentSeries") not in wanted or not self.view.child_visible(item.get("Labels", [])):
                continue
            metadata = item.get("Metadata", {})
            refs.append(
                InstanceRef(
                    id=item["ID"],
                    series_id=item["ParentSeries"],
                    sop_class_uid=metadata.get("SopClassUid", ""),
                    transfer_syntax=metadata.get("TransferSyntax", ""),
                )
            )
        return refs

    def instances_of_studies(self, studies: dict[str, str]) -> list[InstanceRef]:
        series = self.series_of_studies(studies)
        return self.instances_of_series([s["ID"] for s in series], "0020,000d", list(studies.values()))

    def study_stats(self, studies: dict[str, str]) -> dict[str, StudyStats]:
        """Per study: visible series and instances, their modalities and SOP classes."""
        stats = {study_id: StudyStats() for study_id in studies}
        series = self.series_of_studies(studies)
        series_study = {s["ID"]: s["ParentStudy"] for s in series}
        for s in series:
            entry = stats[s["ParentStudy"]]
            entry.series += 1
            modality = s.get("MainDicomTags", {}).get("0008,0060", "")
            if modality and modality not in entry.modalities:
                entry.modalities.append(modality)
        for instance in self.instances_of_series(series_study, "0020,000d", list(studies.values())):
            entry = stats[series_study[instance.series_id]]
            entry.instances += 1
            if instance.sop_class_uid and instance.sop_class_uid not in entry.sop_classes:
                entry.sop_classes.append(instance.sop_class_uid)
        return stats

    def series_instance_counts(self, series: dict[str, str]) -> dict[str, int]:
        """Visible instances per series (Orthanc ID -> SeriesInstanceUID)."""
        counts = dict.fromkeys(series, 0)
        for instance in self.instances_of_series(series, "0020,000e", list(series.values())):
            counts[instance.series_id] += 1
        return counts
