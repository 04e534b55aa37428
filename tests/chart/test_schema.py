"""values.schema.json rejects typos and wrong values before anything is rendered."""

from __future__ import annotations

import json
from typing import Any

import helm_python
import pytest
import yaml

from tests.chart.helpers import CHART_DIR, Object, chart, render, value_set, value_set_names


def rejection(values: Object) -> str:
    """The Helm engine's message when it refuses to render these values."""
    with pytest.raises(helm_python.HelmValuesError) as caught:
        render(values)
    return str(caught.value)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # Misspelt keys, at the top and deeper down: additionalProperties is false.
        ({"imagee": {"tag": "1.0"}}, "imagee"),
        ({"image": {"tagg": "1.0"}}, "tagg"),
        ({"crds": {"instal": False}}, "instal"),
        ({"watch": {"scope": "all", "namespace": ["a"]}}, "namespace"),
        ({"metrics": {"serviceMonitor": {"enable": True}}}, "enable"),
        ({"tenants": {"items": [{"name": "a", "spec": {}, "namepsace": "x"}]}}, "namepsace"),
        ({"resources": {"request": {"cpu": "1"}}}, "request"),
        ({"operator": {"settings": {"statusIntervall": 5}}}, "statusIntervall"),
        # Wrong enum values and types.
        ({"watch": {"scope": "cluster"}}, "/watch/scope"),
        ({"operator": {"logFormat": "yaml"}}, "/operator/logFormat"),
        ({"operator": {"logLevel": "trace"}}, "/operator/logLevel"),
        ({"image": {"pullPolicy": "always"}}, "/image/pullPolicy"),
        ({"crds": {"keep": "yes"}}, "/crds/keep"),
        ({"operator": {"healthPort": 80}}, "/operator/healthPort"),
        ({"operator": {"settings": {"maxWorkers": 0}}}, "/operator/settings/maxWorkers"),
        ({"image": {"digest": "sha256:short"}}, "/image/digest"),
        ({"metrics": {"interval": "30 seconds"}}, "/metrics/interval"),
        ({"tenants": {"items": [{"name": "Not_A_Name", "spec": {}}]}}, "/tenants/items/0/name"),
        ({"tenants": {"items": [{"name": "a"}]}}, "spec"),
        # Scope and namespace list must agree.
        ({"watch": {"scope": "namespaces"}}, "namespaces"),
        ({"watch": {"scope": "namespaces", "namespaces": []}}, "/watch/namespaces"),
        ({"watch": {"scope": "namespace", "namespaces": ["other"]}}, "/watch/namespaces"),
    ],
)
def test_schema_rejects(values: Object, expected: str) -> None:
    message = rejection(values)
    assert "values don't meet the specifications of the schema" in message
    assert expected in message


def test_lint_reports_schema_violations_as_errors() -> None:
    report = helm_python.lint(CHART_DIR, {"imagee": {}}, strict=True)
    assert any("imagee" in error for error in report["errors"])


@pytest.mark.parametrize("name", value_set_names())
def test_schema_accepts_every_value_set(name: str) -> None:
    chart().validate_schema(value_set(name))


def test_every_default_value_is_documented_and_in_the_schema() -> None:
    """Each value in values.yaml has a "# --" comment right above it, and the schema names every
    key the chart itself defines (only Kubernetes pass-through objects are free-form)."""
    schema: dict[str, Any] = json.loads((CHART_DIR / "values.schema.json").read_text())
    text = (CHART_DIR / "values.yaml").read_text()
    lines = text.splitlines()
    root = yaml.compose(text)
    assert isinstance(root, yaml.MappingNode)

    def documented(line: int) -> bool:
        above = line - 1
        while above >= 0 and lines[above].strip().startswith("#"):
            if lines[above].strip().startswith("# --"):
                return True
            above -= 1
        return False

    def walk(node: yaml.MappingNode, schema_node: dict[str, Any], path: str) -> None:
        for key_node, value_node in node.value:
            key = f"{path}{key_node.value}"
            assert key_node.value in schema_node.get("properties", {}), f"{key} is not in values.schema.json"
            child = schema_node["properties"][key_node.value]
            if documented(key_node.start_mark.line):
                continue
            # Not documented itself: only a section may be, whose values carry the comments.
            assert "properties" in child and isinstance(value_node, yaml.MappingNode), (
                f"values.yaml: {key} has no '# --' comment"
            )
            walk(value_node, child, f"{key}.")

    walk(root, schema, "")
