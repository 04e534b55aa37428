"""`helm lint --strict` by the Helm engine itself, for the defaults and every value set."""

from __future__ import annotations

from pathlib import Path

import helm_python
import pytest

from tests.chart.helpers import (
    CHART_DIR,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    chart,
    lint_problems,
    render,
    value_set,
    value_set_names,
)


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_chart_lints_clean_with_defaults(kube_version: str) -> None:
    assert lint_problems(kube_version=kube_version) == []


@pytest.mark.parametrize("name", value_set_names())
def test_chart_lints_clean_with_each_value_set(name: str) -> None:
    assert lint_problems(value_set(name)) == []


def test_chart_metadata_follows_helm_conventions() -> None:
    metadata = chart().metadata
    assert metadata["apiVersion"] == "v2"
    assert metadata["name"] == "multitenant-dicom"
    assert metadata["type"] == "application"
    assert metadata["kubeVersion"]
    assert chart().schema is not None


def test_packaged_chart_renders_the_same(tmp_path: Path) -> None:
    """`helm package` keeps everything the templates need (files/crds/ is not helmignored)."""
    archive = helm_python.package(CHART_DIR, destination=tmp_path)
    packaged = helm_python.Chart.load(archive)
    assert packaged.render(values={}, name=RELEASE, namespace=NAMESPACE) == render({})
