"""docs/helm.md and docs/gitops.md: their values, manifests and health checks are real.

The Argo CD Lua health script runs in Lua 5.1 (Argo CD's dialect) through ``lupa`` and the Flux
CEL expressions through ``cel-python``, when those packages are installed; they are skipped
otherwise.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from mtdicom_operator.crd import validate_spec

from tests.chart.helpers import (
    CHART_DIR,
    KUBE_VERSIONS,
    REPO,
    Object,
    chart,
    crd_validator,
    kube_validate,
    manifests,
)

HELM_DOC = REPO / "docs" / "helm.md"
GITOPS_DOC = REPO / "docs" / "gitops.md"
CHART_PATH = CHART_DIR.relative_to(REPO).as_posix()


def code_blocks(path: Path, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", path.read_text(), re.DOTALL)


def yaml_documents(path: Path) -> list[Object]:
    """YAML code blocks, and YAML fed to kubectl through a heredoc in shell blocks."""
    texts = code_blocks(path, "yaml")
    for block in code_blocks(path, "sh"):
        texts += re.findall(r"<<'EOF'\n(.*?)\nEOF\n", block, re.DOTALL)
    docs = [doc for text in texts for doc in yaml.safe_load_all(text) if doc]
    assert docs
    return docs


def of_kind(path: Path, kind: str) -> list[Object]:
    found = [doc for doc in yaml_documents(path) if doc.get("kind") == kind]
    assert found, f"{path.name} has no {kind}"
    return found


def documented_value_keys() -> list[str]:
    """Keys of values.yaml carrying a "# --" comment (the documented values)."""
    text = (CHART_DIR / "values.yaml").read_text()
    lines = text.splitlines()
    keys: list[str] = []

    def walk(node: yaml.MappingNode, path: str) -> None:
        for key_node, value_node in node.value:
            key = f"{path}{key_node.value}"
            above = key_node.start_mark.line - 1
            while (
                above >= 0
                and lines[above].strip().startswith("#")
                and not lines[above].strip().startswith("# --")
            ):
                above -= 1
            if above >= 0 and lines[above].strip().startswith("# --"):
                keys.append(key)
            else:
                walk(value_node, f"{key}.")

    root = yaml.compose(text)
    assert isinstance(root, yaml.MappingNode)
    walk(root, "")
    return keys


def test_values_reference_lists_every_value() -> None:
    text = HELM_DOC.read_text()
    missing = [key for key in documented_value_keys() if f"| `{key}` |" not in text]
    assert missing == []


def check_chart_values(values: Object) -> None:
    chart().validate_schema(values)
    for manifest in manifests(values):
        if not manifest.obj["apiVersion"].startswith(("mtdicom.io/", "monitoring.coreos.com/")):
            for version in KUBE_VERSIONS:
                kube_validate(manifest.obj, version)


def test_argo_cd_application_points_at_the_chart_with_valid_values() -> None:
    (app,) = of_kind(GITOPS_DOC, "Application")
    source = app["spec"]["source"]
    assert source["path"] == CHART_PATH
    values = source["helm"]["valuesObject"]
    assert values["crds"]["install"] is True and values["crds"]["keep"] is True
    check_chart_values(values)


def test_flux_helm_release_points_at_the_chart_with_valid_values() -> None:
    (release,) = of_kind(GITOPS_DOC, "HelmRelease")
    (source,) = of_kind(GITOPS_DOC, "GitRepository")
    spec = release["spec"]["chart"]["spec"]
    assert spec["chart"] == f"./{CHART_PATH}"
    assert spec["sourceRef"] == {
        "kind": "GitRepository",
        "name": source["metadata"]["name"],
        "namespace": "flux-system",
    }
    values = release["spec"]["values"]
    assert values["crds"]["keep"] is True
    check_chart_values(values)


def test_tenant_examples_in_the_docs_are_valid() -> None:
    for tenant in of_kind(HELM_DOC, "MultitenantDicomServer"):
        crd_validator(tenant["apiVersion"], tenant["kind"]).validate(tenant)
        assert validate_spec(tenant["spec"]) == []


# --- the health checks -----------------------------------------------------------------


def condition(type_: str, status: str, generation: int, message: str = "") -> Object:
    return {
        "type": type_,
        "status": status,
        "observedGeneration": generation,
        "lastTransitionTime": "2025-01-01T00:00:00Z",
        "reason": "Test",
        "message": message or f"{type_} is {status}",
    }


def resource(generation: int, conditions: list[Object] | None, observed: int | None = None) -> Object:
    obj: Object = {
        "apiVersion": "mtdicom.io/v1alpha1",
        "kind": "MultitenantDicomServer",
        "metadata": {"name": "hello", "namespace": "pacs", "generation": generation},
        "spec": {
            "orthanc": {"url": "http://orthanc:8042"},
            "servers": [{"aet": "HELLO", "port": 4242, "labels": ["hello"]}],
        },
    }
    if conditions is not None:
        obj["status"] = {"conditions": conditions}
        if observed is not None:
            obj["status"]["observedGeneration"] = observed
    return obj


# (resource, Argo CD health, Flux verdict: "current", "failed" or "in progress")
HEALTH_CASES: list[tuple[str, Object, str, str]] = [
    ("no status yet", resource(1, None), "Progressing", "in progress"),
    (
        "ready",
        resource(
            3,
            [
                condition("Ready", "True", 3),
                condition("Progressing", "False", 3),
                condition("Degraded", "False", 3),
            ],
            3,
        ),
        "Healthy",
        "current",
    ),
    (
        "ready, but for the previous spec",
        resource(
            4,
            [
                condition("Ready", "True", 3),
                condition("Progressing", "False", 3),
                condition("Degraded", "False", 3),
            ],
            3,
        ),
        "Progressing",
        "in progress",
    ),
    (
        "pods starting",
        resource(
            2,
            [
                condition("Ready", "False", 2),
                condition("Progressing", "True", 2, "HELLO: 0/1 ready"),
                condition("Degraded", "False", 2),
            ],
            2,
        ),
        "Progressing",
        "in progress",
    ),
    (
        "invalid spec (observedGeneration stays behind)",
        resource(
            5,
            [
                condition("Ready", "False", 5),
                condition("Progressing", "False", 5),
                condition("Degraded", "True", 5, "bad aet"),
            ],
            4,
        ),
        "Degraded",
        "failed",
    ),
    (
        "degraded before, the new spec is progressing",
        resource(
            6,
            [
                condition("Ready", "False", 6),
                condition("Progressing", "True", 6),
                condition("Degraded", "True", 5),
            ],
            5,
        ),
        "Progressing",
        "in progress",
    ),
]
CASE_IDS = [case[0] for case in HEALTH_CASES]


def test_health_samples_match_the_crd_status_schema() -> None:
    for _, obj, _, _ in HEALTH_CASES:
        crd_validator(obj["apiVersion"], obj["kind"]).validate(obj)


def argo_lua_script() -> str:
    (config,) = of_kind(GITOPS_DOC, "ConfigMap")
    script = config["data"]["resource.customizations.health.mtdicom.io_MultitenantDicomServer"]
    assert isinstance(script, str)
    return script


@pytest.mark.parametrize(("name", "obj", "argo", "flux"), HEALTH_CASES, ids=CASE_IDS)
def test_argo_cd_lua_health_check(name: str, obj: Object, argo: str, flux: str) -> None:
    lua51 = pytest.importorskip("lupa.lua51", reason="lupa is not installed")
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(copy.deepcopy(obj), recursive=True)
    result = lua.execute(argo_lua_script())
    assert result["status"] == argo, name
    if argo != "Healthy" and obj.get("status"):
        assert result["message"]


def flux_expressions() -> dict[str, str]:
    (kustomization,) = of_kind(GITOPS_DOC, "Kustomization")
    (check,) = kustomization["spec"]["healthCheckExprs"]
    assert (check["apiVersion"], check["kind"]) == ("mtdicom.io/v1alpha1", "MultitenantDicomServer")
    return {key: check[key] for key in ("current", "failed", "inProgress") if key in check}


@pytest.mark.parametrize(("name", "obj", "argo", "flux"), HEALTH_CASES, ids=CASE_IDS)
def test_flux_cel_health_check(name: str, obj: Object, argo: str, flux: str) -> None:
    celpy = pytest.importorskip("celpy", reason="cel-python is not installed")
    env = celpy.Environment()
    activation = {key: celpy.json_to_cel(value) for key, value in obj.items()}

    def holds(expression: str) -> bool:
        result: Any = env.program(env.compile(expression)).evaluate(activation)
        return result is True or (isinstance(result, celpy.celtypes.BoolType) and bool(result))

    expressions = flux_expressions()
    verdict = (
        "failed"
        if holds(expressions["failed"])
        else "current"
        if holds(expressions["current"])
        else "in progress"
    )
    assert verdict == flux, name
