"""The chart's CRD is the repository's crds/ file, unchanged but for Helm's metadata."""

from __future__ import annotations

import copy
import subprocess

from tests.chart.helpers import CRD_COPY, CRD_SOURCE, REPO, chart, crd_source, manifests, one, select


def test_chart_copy_is_byte_identical_to_the_single_source() -> None:
    sources = sorted(p.name for p in CRD_SOURCE.parent.glob("*.yaml"))
    copies = sorted(p.name for p in CRD_COPY.parent.glob("*.yaml"))
    assert copies == sources, "run scripts/sync-chart-crds"
    for name in sources:
        source = (CRD_SOURCE.parent / name).read_bytes()
        assert (CRD_COPY.parent / name).read_bytes() == source, (
            f"{name} is stale: run scripts/sync-chart-crds"
        )


def test_sync_script_agrees() -> None:
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "sync-chart-crds"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_rendered_crd_is_the_source_plus_helm_metadata() -> None:
    rendered = one(manifests({}), "CustomResourceDefinition")
    source = crd_source()
    assert rendered["spec"] == source["spec"]
    assert {k: v for k, v in rendered.items() if k != "metadata"} == {
        k: v for k, v in source.items() if k != "metadata"
    }
    meta, source_meta = copy.deepcopy(rendered["metadata"]), source["metadata"]
    assert meta.pop("name") == source_meta["name"]
    annotations = meta.pop("annotations")
    assert annotations == {**source_meta.get("annotations", {}), "helm.sh/resource-policy": "keep"}
    labels = meta.pop("labels")
    assert source_meta.get("labels", {}).items() <= labels.items()
    assert labels["app.kubernetes.io/component"] == "crd"
    assert meta == {}


def test_crd_policy_values() -> None:
    assert not select(manifests({"crds": {"install": False}}), "CustomResourceDefinition")
    crd = one(manifests({"crds": {"keep": False}}), "CustomResourceDefinition")
    assert "helm.sh/resource-policy" not in crd["metadata"].get("annotations", {})
    argo = {"argocd.argoproj.io/sync-options": "ServerSideApply=true"}
    crd = one(manifests({"crds": {"annotations": argo}}), "CustomResourceDefinition")
    assert crd["metadata"]["annotations"].items() >= {**argo, "helm.sh/resource-policy": "keep"}.items()


def test_crd_is_not_in_the_install_only_crds_folder() -> None:
    assert chart().crds == []
