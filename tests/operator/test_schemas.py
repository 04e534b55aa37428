"""The CRD and every rendered child against real Kubernetes schemas; samples against the CRD.

kubernetes-validate ships the OpenAPI schemas of each Kubernetes release; ``strict`` also
refuses unknown fields, which a real API server would silently drop. The CRD's CEL rules run
in cel-python (plus ``upperAscii``, which Kubernetes adds from cel-go's strings extension).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import celpy
import jsonschema
import kubernetes_validate
import pytest
import yaml
from celpy import celtypes
from mtdicom_operator.builders import build_children
from mtdicom_operator.crd import SPEC_CEL_RULES, apply_defaults, build_crd, cross_field_errors, spec_schema

from tests.operator.samples import (
    CRD_FILE,
    OWNER,
    example_resources,
    full_spec,
    hello_spec,
    many_servers_spec,
)

KUBE_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


def test_crd_file_is_generated_from_the_python_source() -> None:
    on_disk = yaml.safe_load(CRD_FILE.read_text())
    assert on_disk == build_crd(), (
        "run: python -m mtdicom_operator.crd > crds/mtdicom.io_multitenantdicomservers.yaml"
    )


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_crd_is_a_valid_customresourcedefinition(version: str) -> None:
    kubernetes_validate.validate(build_crd(), version, strict=True)


def test_crd_names_and_columns() -> None:
    crd = build_crd()
    assert crd["metadata"]["name"] == "multitenantdicomservers.mtdicom.io"
    names = crd["spec"]["names"]
    assert (names["kind"], names["plural"], names["shortNames"]) == (
        "MultitenantDicomServer",
        "multitenantdicomservers",
        ["mtds"],
    )
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Servers": ".status.readyServers",
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Reason": '.status.conditions[?(@.type=="Ready")].reason',
        "Age": ".metadata.creationTimestamp",
    }


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{key}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def test_schema_is_structural() -> None:
    """The rules of a structural schema the API server enforces on CRD creation."""
    root = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in walk(root):
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node, path
            continue
        assert "type" in node, f"{path} has no type"
        assert not ("properties" in node and "additionalProperties" in node), path
        if node["type"] == "array":
            assert "items" in node, path
        if node.get("x-kubernetes-list-type") == "map":
            for key in node["x-kubernetes-list-map-keys"]:
                assert key in node["items"]["required"], path
        if "default" in node:
            # A default must validate against its own schema, or the API server refuses the CRD.
            jsonschema.validate(node["default"], node)


def test_every_spec_field_has_a_description() -> None:
    for path, node in walk(spec_schema()):
        assert node.get("description") or path.endswith(("{}", "[]")) or "anyOf" in node, path


def crd_validator() -> jsonschema.Draft4Validator:
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return jsonschema.Draft4Validator(schema)


def test_examples_validate_against_the_crd_schema() -> None:
    validator = crd_validator()
    resources = example_resources()
    assert resources
    for resource in resources:
        assert resource["apiVersion"] == "mtdicom.io/v1alpha1"
        assert resource["kind"] == "MultitenantDicomServer"
        validator.validate(resource)


def test_crd_schema_refuses_what_the_operator_refuses() -> None:
    validator = crd_validator()
    resource = {"apiVersion": "mtdicom.io/v1alpha1", "kind": "MultitenantDicomServer", "spec": hello_spec()}
    for change in (
        lambda s: s["servers"][0].update(aet="A" * 17),
        lambda s: s["servers"][0].update(port=70000),
        lambda s: s["servers"][0].update(labels=["white space"]),
        lambda s: s["servers"][0].update(labelsConstraint="Most"),
        lambda s: s["servers"][0].update(service={"type": "ExternalName"}),
    ):
        bad = copy.deepcopy(resource)
        change(bad["spec"])
        assert not validator.is_valid(bad)


# --- CEL ------------------------------------------------------------------------------------


def upper_ascii(value: celtypes.StringType) -> celtypes.StringType:
    return celtypes.StringType("".join(c.upper() if c.isascii() else c for c in value))


def cel_rules(schema: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for path, node in walk(schema):
        for rule in node.get("x-kubernetes-validations", []):
            yield path, rule["rule"]


def cel_holds(rule: str, value: Any) -> bool:
    environment = celpy.Environment()
    program = environment.program(environment.compile(rule), functions={"upperAscii": upper_ascii})
    result = program.evaluate({"self": celpy.json_to_cel(value)})
    return bool(result)


def nodes_at(value: Any, path: str) -> Iterator[Any]:
    """Values at a walk() path like '.servers[].service' (what a rule's ``self`` is)."""
    if not path:
        yield value
        return
    head, rest = path, ""
    for i, char in enumerate(path[1:], 1):
        if char in ".[{":
            head, rest = path[:i], path[i:]
            break
    if head == "[]":
        for item in value if isinstance(value, list) else []:
            yield from nodes_at(item, rest)
    elif head.startswith("."):
        key = head[1:]
        if isinstance(value, dict) and key in value:
            yield from nodes_at(value[key], rest)


def cel_failures(spec: dict[str, Any]) -> list[str]:
    """Rules that fail, evaluated like the API server does: after defaulting."""
    spec = apply_defaults(spec)
    failures = []
    for path, rule in cel_rules(spec_schema()):
        for node in nodes_at(spec, path):
            if not cel_holds(rule, node):
                failures.append(rule)
    return failures


def test_cel_rules_are_the_documented_ones() -> None:
    rules = [rule for _, rule in cel_rules(spec_schema())]
    assert [r["rule"] for r in SPEC_CEL_RULES] == rules[: len(SPEC_CEL_RULES)]
    assert len(rules) == len(SPEC_CEL_RULES) + 4


@pytest.mark.parametrize(
    "spec", [hello_spec(), full_spec(), many_servers_spec(6)], ids=["hello", "full", "many"]
)
def test_valid_specs_pass_every_cel_rule(spec: dict[str, Any]) -> None:
    assert cel_failures(spec) == []


CROSS_FIELD_CASES = {
    "duplicate AET": lambda s: s["servers"][1].update(aet="HELLO"),
    "AET differing only in case": lambda s: s["servers"][1].update(aet="Hello"),
    "duplicate port": lambda s: s["servers"][1].update(port=4343),
    "duplicate nodePort": lambda s: [
        server.update(service={"type": "NodePort", "nodePort": 30100}) for server in s["servers"]
    ],
    "nodePort on ClusterIP": lambda s: s["servers"][0].update(
        service={"type": "ClusterIP", "nodePort": 30100}
    ),
    "source ranges without LoadBalancer": lambda s: s["servers"][0].update(
        service={"type": "NodePort", "loadBalancerSourceRanges": ["10.0.0.0/8"]}
    ),
    "traffic policy on ClusterIP": lambda s: s["servers"][0].update(
        service={"type": "ClusterIP", "externalTrafficPolicy": "Local"}
    ),
    "unknown move destination": lambda s: s["servers"][0].update(allowedMoveDestinations=["pacs2"]),
    "empty labels": lambda s: s["servers"][0].update(labels=[]),
}


@pytest.mark.parametrize("case", sorted(CROSS_FIELD_CASES))
def test_cel_and_the_operator_refuse_the_same_specs(case: str) -> None:
    spec = hello_spec()
    CROSS_FIELD_CASES[case](spec)
    assert cel_failures(spec), f"CEL accepts {case}"
    assert list(cross_field_errors(spec)), f"the operator accepts {case}"


def test_empty_labels_are_allowed_when_asked_for() -> None:
    spec = hello_spec()
    spec["servers"][0].update(labels=[], allowEmptyLabels=True)
    assert cel_failures(spec) == [] and list(cross_field_errors(spec)) == []


# --- the children against Kubernetes' own schemas ----------------------------------------


def rendered() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, spec in (("hello", hello_spec()), ("full", full_spec()), ("many", many_servers_spec(5))):
        for child in build_children(OWNER, spec):
            yield f"{name}:{child['kind']}/{child['metadata']['name']}", child


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_rendered_child_is_valid_kubernetes(version: str) -> None:
    count = 0
    for label, child in rendered():
        try:
            kubernetes_validate.validate(child, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{label}: {exc}") from exc
        count += 1
    assert count == 3 * (2 + 3 + 5)


def test_validation_would_catch_a_broken_child() -> None:
    child = build_children(OWNER, hello_spec())[1]
    child["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "dicom"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(child, KUBE_VERSIONS[-1], strict=True)
