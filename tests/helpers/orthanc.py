"""A deliberately small Orthanc REST client for tests.

Tests check the product through this independent client, never through the tenant
server's own Orthanc client, so a bug there cannot hide itself.
"""

from __future__ import annotations

from typing import Any

import requests

LEVEL_ROUTES = {"Patient": "patients", "Study": "studies", "Series": "series", "Instance": "instances"}


class OrthancRest:
    def __init__(self, url: str, username: str, password: str) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self.password = password
        self.session = requests.Session()
        self.session.auth = (username, password)

    def get(self, path: str) -> Any:
        reply = self.session.get(self.url + path, timeout=30)
        reply.raise_for_status()
        return reply.json()

    def post(self, path: str, body: Any) -> Any:
        reply = self.session.post(self.url + path, json=body, timeout=60)
        reply.raise_for_status()
        return reply.json()

    def upload(self, data: bytes) -> dict[str, Any]:
        reply = self.session.post(self.url + "/instances", data=data, timeout=60)
        reply.raise_for_status()
        result: dict[str, Any] = reply.json()
        return result

    def add_label(self, level: str, orthanc_id: str, label: str) -> None:
        reply = self.session.put(f"{self.url}/{LEVEL_ROUTES[level]}/{orthanc_id}/labels/{label}", timeout=30)
        reply.raise_for_status()

    def labels(self, level: str, orthanc_id: str) -> list[str]:
        return sorted(self.get(f"/{LEVEL_ROUTES[level]}/{orthanc_id}/labels"))

    def exists(self, level: str, orthanc_id: str) -> bool:
        reply = self.session.get(f"{self.url}/{LEVEL_ROUTES[level]}/{orthanc_id}", timeout=30)
        return reply.status_code == 200

    def find(self, level: str, query: dict[str, str], **extra: Any) -> list[Any]:
        result: list[Any] = self.post("/tools/find", {"Level": level, "Query": query, **extra})
        return result

    def delete(self, level: str, orthanc_id: str) -> None:
        self.session.delete(f"{self.url}/{LEVEL_ROUTES[level]}/{orthanc_id}", timeout=30)

    def store_with_labels(
        self, data: bytes, labels: list[str], levels: tuple[str, ...] = ("Study", "Series", "Instance")
    ) -> dict[str, Any]:
        """Upload one instance and label it as a tenant's C-STORE would."""
        answer = self.upload(data)
        ids = {
            "Patient": answer["ParentPatient"],
            "Study": answer["ParentStudy"],
            "Series": answer["ParentSeries"],
            "Instance": answer["ID"],
        }
        for level in levels:
            for label in labels:
                self.add_label(level, ids[level], label)
        return ids
