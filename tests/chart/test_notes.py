"""NOTES.txt tells how to create a tenant and reach it; its example is checked against the CRD
and against the names the operator's builders really give the children."""

from __future__ import annotations

import re

import pytest
import yaml
from mtdicom_operator.builders import Owner, build_children
from mtdicom_operator.crd import validate_spec

from tests.chart.helpers import NAMESPACE, Object, crd_validator, manifests, notes, one, value_set


def example_tenant(text: str) -> Object:
    match = re.search(r"apply -f - <<'EOF'\n(.*?)\n\s*EOF\n", text, re.DOTALL)
    assert match, "NOTES.txt has no tenant example"
    tenant = yaml.safe_load(match.group(1))
    assert isinstance(tenant, dict)
    return tenant


@pytest.mark.parametrize(
    ("values", "tenant_namespace"),
    [({}, NAMESPACE), (value_set("namespace-list"), "radiology"), (value_set("cluster-wide"), NAMESPACE)],
)
def test_notes_example_is_a_valid_tenant_the_operator_would_serve(
    values: Object, tenant_namespace: str
) -> None:
    text = notes(values)
    tenant = example_tenant(text)
    crd_validator(tenant["apiVersion"], tenant["kind"]).validate(tenant)
    assert validate_spec(tenant["spec"]) == []
    assert f"kubectl -n {tenant_namespace} apply -f -" in text

    name = tenant["metadata"]["name"]
    owner = Owner(name=name, namespace=tenant_namespace, uid="uid-1")
    (server,) = tenant["spec"]["servers"]
    (service,) = [c for c in build_children(owner, tenant["spec"]) if c["kind"] == "Service"]
    service_name, port = service["metadata"]["name"], service["spec"]["ports"][0]["port"]
    assert port == server["port"]
    assert f"{service_name}.{tenant_namespace}.svc:{port}" in text
    assert f"port-forward svc/{service_name} {port}:{port}" in text
    assert f"echoscu -aec {server['aet']} localhost {port}" in text
    assert f"wait mtds/{name} --for=condition=Ready" in text


def test_notes_name_the_real_operator_objects() -> None:
    text = notes({})
    deployment = one(manifests({}), "Deployment")["metadata"]["name"]
    assert f"kubectl -n {NAMESPACE} rollout status deployment/{deployment}" in text
    assert f"helm test mtdicom -n {NAMESPACE}" in text


def test_notes_warn_when_the_crd_is_not_managed_here() -> None:
    assert "The CRD is not managed by this release" not in notes({})
    assert "The CRD is not managed by this release" in notes({"crds": {"install": False}})
