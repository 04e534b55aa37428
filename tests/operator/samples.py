"""Specs and owners the operator tests share."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from mtdicom_operator.builders import Owner

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
CRD_FILE = REPO / "crds" / "mtdicom.io_multitenantdicomservers.yaml"

OWNER = Owner(
    name="hello-tenants", namespace="pacs", uid="0b7c1e7e-1111-2222-3333-444455556666", generation=3
)


def example_resources() -> list[dict[str, Any]]:
    """Every MultitenantDicomServer in examples/*.yaml."""
    found = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "MultitenantDicomServer":
                found.append(doc)
    return found


def hello_resource() -> dict[str, Any]:
    docs = list(yaml.safe_load_all((EXAMPLES / "hello-tenants.yaml").read_text()))
    (resource,) = [d for d in docs if d["kind"] == "MultitenantDicomServer"]
    return copy.deepcopy(resource)


def hello_spec() -> dict[str, Any]:
    spec: dict[str, Any] = hello_resource()["spec"]
    return spec


def full_spec() -> dict[str, Any]:
    (resource,) = [r for r in example_resources() if r["metadata"]["name"] == "radiology"]
    spec: dict[str, Any] = copy.deepcopy(resource["spec"])
    return spec


def many_servers_spec(count: int, first_port: int = 20000) -> dict[str, Any]:
    return {
        "orthanc": {"url": "http://orthanc:8042", "credentialsSecret": {"name": "orthanc-credentials"}},
        "servers": [
            {"aet": f"TENANT{i:03d}", "port": first_port + i, "labels": [f"tenant{i:03d}"]}
            for i in range(count)
        ],
    }
