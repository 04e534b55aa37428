"""docs/crd-reference.md and docs/kubernetes.md say what the code does."""

from __future__ import annotations

import json
import re

from mtdicom_operator import settings as operator_settings
from mtdicom_operator.crd import spec_schema
from mtdicom_operator.rbac import CLUSTER_RULES, NAMESPACED_RULES
from mtdicom_operator.reference import fields, render

from tests.operator.samples import REPO

REFERENCE = REPO / "docs" / "crd-reference.md"
KUBERNETES = REPO / "docs" / "kubernetes.md"


def test_crd_reference_is_generated_from_the_schema() -> None:
    assert REFERENCE.read_text() == render(), (
        "run: python -m mtdicom_operator.reference > docs/crd-reference.md"
    )


def test_crd_reference_lists_every_field_with_its_default() -> None:
    text = REFERENCE.read_text()
    for path, schema, _ in fields(spec_schema(), "spec"):
        if path == "spec.servers":
            assert "`spec.servers`: **required**; 1 to 256 items" in text
            continue
        (row,) = [
            line
            for line in text.splitlines()
            if line.startswith(f"| `{path}` |") and not line.split("|")[2].strip().startswith("`")
        ]
        if "default" in schema:
            assert f"`{json.dumps(schema['default'])}`" in row, path
        assert schema.get("description", "")[:20] in row, path


def test_kubernetes_doc_lists_every_setting() -> None:
    text = KUBERNETES.read_text()
    for name in operator_settings.OperatorSettings.__dataclass_fields__:
        variable = operator_settings.PREFIX + name.upper()
        short = "_" + name.upper().split("_", 1)[1] if name.startswith("watch_client") else variable
        assert variable in text or short in text, variable


def test_kubernetes_doc_rbac_table_is_the_rules() -> None:
    rows = re.findall(
        r"^\| (cluster|namespaced) \| (\S+) \| (\S+) \| ([a-z, ]+) \|", KUBERNETES.read_text(), re.M
    )
    documented = {
        (scope, "" if group == '""' else group, resource, verbs.replace(" ", ""))
        for scope, group, resource, verbs in rows
    }
    expected = {
        (scope, group, resource, ",".join(rule["verbs"]))
        for scope, rules in (("cluster", CLUSTER_RULES), ("namespaced", NAMESPACED_RULES))
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert documented == expected


def test_quickstart_is_the_agreed_one() -> None:
    text = KUBERNETES.read_text()
    assert "kubectl apply -f crds/ && kubectl apply -f examples/hello-tenants.yaml" in text
    assert (REPO / "examples" / "hello-tenants.yaml").exists()
