"""Render, lint and validate the Helm chart with the real Helm engine (helm-python-sdk).

No helm binary and no cluster: ``helm_python`` embeds Helm v4 as a library; every object it
renders is checked against the Kubernetes OpenAPI schemas shipped by kubernetes-validate.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import yaml
from kubernetes_validate import utils as kv

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "multitenant-dicom"
VALUES_DIR = Path(__file__).resolve().parent / "values"
CRD_FILENAME = "mtdicom.io_multitenantdicomservers.yaml"
CRD_SOURCE = REPO / "crds" / CRD_FILENAME
CRD_COPY = CHART_DIR / "files" / "crds" / CRD_FILENAME

RELEASE = "mtdicom"
NAMESPACE = "pacs"
# The chart's minimum (Chart.yaml kubeVersion) and the newest schemas kubernetes-validate ships.
KUBE_VERSIONS = ("1.29.0", kv.latest_version())

Object = dict[str, Any]


@dataclass(frozen=True)
class Manifest:
    template: str
    obj: Object

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        return self.obj["metadata"].get("namespace")


@functools.cache
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART_DIR)


def value_set(name: str) -> Object:
    """One of the realistic value files under tests/chart/values/."""
    loaded = yaml.safe_load((VALUES_DIR / f"{name}.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def value_set_names() -> list[str]:
    return sorted(path.stem for path in VALUES_DIR.glob("*.yaml"))


def render(values: Object | None = None, *, namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text, exactly as `helm template` would produce it."""
    return chart().render(values=values or {}, name=RELEASE, namespace=namespace)


@functools.cache
def _render_cached(values_json: str, namespace: str) -> tuple[Manifest, ...]:
    rendered = render(json.loads(values_json), namespace=namespace)
    manifests: list[Manifest] = []
    for template, text in sorted(rendered.items()):
        if not template.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                manifests.append(Manifest(template, doc))
    return tuple(manifests)


def manifests(values: Object | None = None, *, namespace: str = NAMESPACE) -> list[Manifest]:
    """Every object the chart renders for these values (tests and hooks included)."""
    return list(_render_cached(json.dumps(values or {}, sort_keys=True), namespace))


def notes(values: Object | None = None, *, namespace: str = NAMESPACE) -> str:
    rendered = render(values, namespace=namespace)
    return next(text for template, text in rendered.items() if template.endswith("NOTES.txt"))


def select(
    items: Iterable[Manifest], kind: str, name: str | None = None, namespace: str | None = None
) -> list[Manifest]:
    return [
        m
        for m in items
        if m.kind == kind
        and (name is None or m.name == name)
        and (namespace is None or m.namespace == namespace)
    ]


def one(items: Iterable[Manifest], kind: str, name: str | None = None) -> Object:
    found = select(items, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[m.name for m in found]}"
    return found[0].obj


def kube_validate(obj: Object, version: str) -> None:
    """Validate against the strict Kubernetes schema (unknown fields are errors).

    Raises AssertionError with a short message naming the field, not the whole schema.
    """
    try:
        kv.validate(obj, version, strict=True)
    except kv.ValidationError as error:
        path = "/".join(str(p) for p in error.absolute_path)
        raise AssertionError(
            f"{obj['kind']}/{obj['metadata'].get('name')} (Kubernetes {version}): {path}: {error.message}"
        ) from None


def lint_problems(values: Object | None = None, *, kube_version: str | None = None) -> list[dict[str, Any]]:
    """Findings of `helm lint --strict` above "info" severity (1=info, 2=warning, 3=error)."""
    report = helm_python.lint(
        CHART_DIR,
        values,
        strict=True,
        namespace=NAMESPACE,
        kube_version=f"v{kube_version}" if kube_version else None,
    )
    return [m for m in report["messages"] if m["severity"] >= 2] + [
        {"severity": 3, "path": "", "error": e} for e in report["errors"]
    ]


def crd_source() -> Object:
    """The top-level crds/ file, parsed (a fresh copy: callers may change it)."""
    return copy.deepcopy(_crd_source(CRD_SOURCE))


@functools.cache
def _crd_source(path: Path) -> Object:
    loaded = yaml.safe_load(path.read_text())
    assert isinstance(loaded, dict)
    return loaded


def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    """A validator for objects of the CRD's version, from its openAPIV3Schema. It checks types,
    patterns, enums and required fields; CEL rules are not evaluated (the operator's
    validate_spec restates them)."""
    return _crd_validator(CRD_SOURCE, api_version, kind)


@functools.cache
def _crd_validator(path: Path, api_version: str, kind: str) -> jsonschema.Draft7Validator:
    crd = _crd_source(path)
    group, version = api_version.split("/")
    assert (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == (group, kind)
    served = next(v for v in crd["spec"]["versions"] if v["name"] == version)
    return jsonschema.Draft7Validator(served["schema"]["openAPIV3Schema"])


def rule_triples(rules: Iterable[Object]) -> set[tuple[str, str, str]]:
    """RBAC rules as a set of (apiGroup, resource, verb): the permission each rule grants."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


def walk_containers(obj: Object) -> Iterator[Object]:
    """Containers (init and regular) of a Pod or of a workload's pod template."""
    spec = obj["spec"]["template"]["spec"] if "template" in obj.get("spec", {}) else obj["spec"]
    yield from spec.get("initContainers", [])
    yield from spec["containers"]
