"""Example MultitenantDicomServer resources from values: valid against the CRD, in watched
namespaces only."""

from __future__ import annotations

import helm_python
import jsonschema
import pytest
from mtdicom_operator.crd import validate_spec

from tests.chart.helpers import NAMESPACE, crd_source, crd_validator, manifests, select, value_set


def tenants(values: dict) -> list[dict]:
    return [m.obj for m in select(manifests(values), "MultitenantDicomServer")]


def test_no_tenant_unless_asked() -> None:
    assert tenants({}) == []
    assert tenants({"tenants": {"items": value_set("tenants")["tenants"]["items"]}}) == []


def test_tenants_match_the_crd_schema_and_its_cel_rules() -> None:
    crd = crd_source()
    (version,) = [v for v in crd["spec"]["versions"] if v["storage"]]
    api_version = f"{crd['spec']['group']}/{version['name']}"
    rendered = tenants(value_set("tenants"))
    assert [(t["metadata"]["namespace"], t["metadata"]["name"]) for t in rendered] == [
        (NAMESPACE, "hospital"),
        ("research", "study-42"),
    ]
    for tenant in rendered:
        assert tenant["apiVersion"] == api_version
        assert tenant["kind"] == crd["spec"]["names"]["kind"]
        crd_validator(api_version, tenant["kind"]).validate(tenant)
        # The operator's restatement of the schema (unknown fields too) and of the CEL rules.
        assert validate_spec(tenant["spec"]) == []


def test_tenant_values_reach_the_resource_unchanged() -> None:
    values = value_set("tenants")
    for item, tenant in zip(values["tenants"]["items"], tenants(values), strict=True):
        assert tenant["spec"] == item["spec"]
        assert tenant["metadata"]["annotations"] == values["tenants"]["annotations"]
        assert item.get("labels", {}).items() <= tenant["metadata"]["labels"].items()


def test_a_tenant_outside_the_watched_namespaces_is_refused() -> None:
    values = value_set("tenants")
    values["tenants"]["items"][1]["namespace"] = "elsewhere"
    with pytest.raises(helm_python.HelmRenderError, match=r'study-42\) is in namespace "elsewhere"'):
        manifests(values)
    values["watch"] = {"scope": "all"}
    assert len(tenants(values)) == 2


def test_a_bad_tenant_spec_is_caught_by_the_crd_schema() -> None:
    """The chart passes the spec through; the CRD (here: its schema) is what refuses it."""
    values = value_set("tenants")
    values["tenants"]["items"][0]["spec"]["servers"][0]["aet"] = "A" * 17
    (bad, _) = tenants(values)
    with pytest.raises(jsonschema.ValidationError, match="is too long"):
        crd_validator(bad["apiVersion"], bad["kind"]).validate(bad)
