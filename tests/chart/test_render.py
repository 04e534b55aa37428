"""Every realistic value set renders objects that real Kubernetes schemas accept."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
import yaml
from kopf import cli as kopf_cli

from tests.chart.helpers import (
    CHART_DIR,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    Manifest,
    Object,
    crd_validator,
    kube_validate,
    manifests,
    one,
    select,
    value_set,
    value_set_names,
    walk_containers,
)

VALUE_SETS = ["default", *value_set_names()]


def values_for(name: str) -> Object:
    return {} if name == "default" else value_set(name)


# The fields of the Prometheus Operator objects this chart sets, with the types and patterns of
# the monitoring.coreos.com/v1 CRDs; unknown fields are errors, as with the strict Kubernetes
# schemas. (kubernetes-validate has no schema for them, and the CRDs are not vendored here.)
DURATION = {
    "type": "string",
    "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$",
}
ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string"},
        "interval": DURATION,
        "scrapeTimeout": DURATION,
    },
}
MONITOR_SPEC = {
    "namespaceSelector": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "any": {"type": "boolean"},
            "matchNames": {"type": "array", "items": {"type": "string"}},
        },
    },
    "selector": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
            "matchExpressions": {"type": "array"},
        },
    },
    "podTargetLabels": {"type": "array", "items": {"type": "string"}},
}


def monitor_schema(kind: str, endpoints: str) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", endpoints],
                "properties": {
                    **MONITOR_SPEC,
                    endpoints: {"type": "array", "minItems": 1, "items": ENDPOINT},
                },
            },
        },
    }


# The Prometheus Operator's PrometheusRule, the fields the chart uses (monitoring.coreos.com/v1).
PROMETHEUS_RULE = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name", "rules"],
                        "properties": {
                            "name": {"type": "string", "minLength": 1},
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["alert", "expr"],
                                    "properties": {
                                        "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                        "expr": {"type": "string", "minLength": 1},
                                        "for": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
                                        "labels": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                        "annotations": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}

MONITOR_SCHEMAS = {
    "ServiceMonitor": monitor_schema("ServiceMonitor", "endpoints"),
    "PodMonitor": monitor_schema("PodMonitor", "podMetricsEndpoints"),
    "PrometheusRule": PROMETHEUS_RULE,
}


def validate_object(manifest: Manifest, version: str) -> None:
    obj = manifest.obj
    if obj["apiVersion"].startswith("mtdicom.io/"):
        crd_validator(obj["apiVersion"], obj["kind"]).validate(obj)
    elif obj["apiVersion"].startswith("monitoring.coreos.com/"):
        jsonschema.validate(obj, MONITOR_SCHEMAS[obj["kind"]], cls=jsonschema.Draft7Validator)
    else:
        kube_validate(obj, version)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_object_is_valid(name: str, kube_version: str) -> None:
    rendered = manifests(values_for(name))
    assert rendered
    for manifest in rendered:
        validate_object(manifest, kube_version)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_objects_carry_the_standard_labels(name: str) -> None:
    for manifest in manifests(values_for(name)):
        labels = manifest.obj["metadata"].get("labels", {})
        where = f"{manifest.kind}/{manifest.name}"
        assert labels.get("helm.sh/chart") == "multitenant-dicom-0.1.0", where
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", where
        assert labels.get("app.kubernetes.io/instance") == RELEASE, where
        assert labels.get("app.kubernetes.io/name") == "multitenant-dicom", where
        assert labels.get("app.kubernetes.io/component"), where


@pytest.mark.parametrize("name", VALUE_SETS)
def test_names_are_unique(name: str) -> None:
    keys = [(m.obj["apiVersion"], m.kind, m.namespace, m.name) for m in manifests(values_for(name))]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("name", VALUE_SETS)
def test_operator_deployment_is_a_single_recreated_restricted_pod(name: str) -> None:
    deployment = one(manifests(values_for(name)), "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "Recreate"}
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz"
    assert probe["port"] in {p["name"] for p in container["ports"]}
    assert {p["containerPort"] for p in container["ports"] if p["name"] == probe["port"]} == {8080}
    # The selector only uses labels that never change across upgrades.
    assert set(spec["selector"]["matchLabels"]) == {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
    }
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()


def kopf_params(values: Object) -> dict[str, Any]:
    """Parse the operator's command with kopf's own CLI definition (no operator is started)."""
    deployment = one(manifests(values), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    command = container["command"]
    assert command[:2] == ["kopf", "run"]
    params: dict[str, Any] = kopf_cli.run.make_context("run", list(command[2:])).params
    return params


def test_operator_command_for_each_scope() -> None:
    params = kopf_params({})
    assert params["standalone"] is True
    assert params["modules"] == ("mtdicom_operator",)
    assert params["liveness_endpoint"] == "http://0.0.0.0:8080/healthz"
    assert params["namespaces"] == (NAMESPACE,)
    assert params["clusterwide"] is False

    params = kopf_params(value_set("namespace-list"))
    assert params["namespaces"] == ("radiology", "cardiology")
    assert params["clusterwide"] is False

    params = kopf_params(value_set("cluster-wide"))
    assert params["namespaces"] == ()
    assert params["clusterwide"] is True


def test_operator_log_options_reach_kopf() -> None:
    assert kopf_params({})["debug"] is False
    params = kopf_params(value_set("external-crd"))
    assert params["debug"] is True
    assert params["log_refkey"] == "mtdicom"
    assert kopf_params({"operator": {"logLevel": "quiet"}})["quiet"] is True
    assert kopf_params({"operator": {"logFormat": "json"}})["log_format"].name == "JSON"


def test_image_tag_defaults_to_app_version_and_digest_wins() -> None:
    chart_yaml = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    images = {
        c["image"] for m in manifests({}) if m.kind in {"Deployment", "Pod"} for c in walk_containers(m.obj)
    }
    assert images == {f"ghcr.io/mtdicom/multitenant-dicom:{chart_yaml['appVersion']}"}
    values = value_set("cluster-wide")
    deployment = one(manifests(values), "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"{values['image']['repository']}@{values['image']['digest']}"


def test_helm_test_hook_probes_the_operator_liveness_endpoint() -> None:
    rendered = manifests({})
    (test_pod,) = [m.obj for m in select(rendered, "Pod")]
    annotations = test_pod["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "test"
    assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    assert test_pod["spec"]["restartPolicy"] == "Never"
    script = test_pod["spec"]["containers"][0]["command"][-1]
    service = one(rendered, "Service")
    port = service["spec"]["ports"][0]["port"]
    assert f"http://{service['metadata']['name']}.{NAMESPACE}.svc:{port}/healthz" in script
    compile(script, "helm-test", "exec")  # the probe is valid Python
    # The Service reaches the operator pod's health port.
    deployment = one(rendered, "Deployment")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert service["spec"]["ports"][0]["targetPort"] in {p["name"] for p in container["ports"]}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_pod_meets_the_restricted_pod_security_standard(name: str) -> None:
    for manifest in manifests(values_for(name)):
        if manifest.kind not in {"Deployment", "Pod"}:
            continue
        spec = (
            manifest.obj["spec"]["template"]["spec"]
            if manifest.kind == "Deployment"
            else manifest.obj["spec"]
        )
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        for container in walk_containers(manifest.obj):
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"]["drop"] == ["ALL"]
            assert not security.get("privileged")
            assert not container.get("ports") or all("hostPort" not in p for p in container["ports"])
