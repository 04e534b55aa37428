"""The PodMonitor/ServiceMonitor select the pods the operator really builds, on the port that
really serves /metrics: checked against the operator's own builders, not a copy of its labels."""

from __future__ import annotations

import re

import helm_python
import promql_parser
import pytest
from mtdicom_operator.builders import Owner, build_children

from tenant_server.telemetry import Telemetry
from tests.chart.helpers import Manifest, Object, manifests, one, select, value_set


def tenant_pods(rendered: list[Manifest]) -> list[tuple[str, Object]]:
    """(namespace, pod template) of every tenant-server pod the operator would run for the
    tenants in ``rendered``."""
    pods = []
    for tenant in select(rendered, "MultitenantDicomServer"):
        owner = Owner(name=tenant.name, namespace=str(tenant.namespace), uid="uid-1", generation=1)
        for child in build_children(owner, tenant.obj["spec"]):
            if child["kind"] == "Deployment":
                pods.append((owner.namespace, child["spec"]["template"]))
    assert pods
    return pods


def with_tenants(values: Object) -> Object:
    tenants = value_set("tenants")
    return {**tenants, **values, "watch": values.get("watch", tenants["watch"])}


def metrics_port(pod: Object, port_name: str) -> int:
    ports = [p for c in pod["spec"]["containers"] for p in c.get("ports", []) if p["name"] == port_name]
    assert len(ports) == 1, f"tenant pods have no single port named {port_name!r}"
    return int(ports[0]["containerPort"])


def matches(selector: Object, labels: dict[str, str]) -> bool:
    assert set(selector) == {"matchLabels"}
    return bool(selector["matchLabels"].items() <= labels.items())


def test_pod_monitor_selects_every_tenant_pod_of_the_watched_namespaces() -> None:
    rendered = manifests(with_tenants({"metrics": {"podMonitor": {"enabled": True}}}))
    monitor = one(rendered, "PodMonitor")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    for namespace, pod in tenant_pods(rendered):
        assert namespace in monitor["spec"]["namespaceSelector"]["matchNames"]
        assert matches(monitor["spec"]["selector"], pod["metadata"]["labels"])
        assert metrics_port(pod, endpoint["port"]) == 8080
        assert set(monitor["spec"]["podTargetLabels"]) <= set(pod["metadata"]["labels"])
        # The pods' own prometheus.io annotations agree with the monitor.
        assert pod["metadata"]["annotations"]["prometheus.io/path"] == endpoint["path"]


def test_pod_monitor_covers_all_namespaces_with_scope_all() -> None:
    rendered = manifests(value_set("cluster-wide"))
    assert one(rendered, "PodMonitor")["spec"]["namespaceSelector"] == {"any": True}


def test_service_monitor_reaches_every_tenant_pod_through_a_metrics_service() -> None:
    rendered = manifests(with_tenants(value_set("metrics")))
    monitor = one(rendered, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    watched = monitor["spec"]["namespaceSelector"]["matchNames"]
    services = {
        str(m.namespace): m.obj
        for m in select(rendered, "Service")
        if matches(monitor["spec"]["selector"], m.obj["metadata"]["labels"])
    }
    assert sorted(services) == sorted(watched)  # one metrics Service per watched namespace
    for namespace, pod in tenant_pods(rendered):
        service = services[namespace]
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
        assert metrics_port(pod, port["targetPort"]) == 8080


def test_operator_tenant_services_do_not_expose_metrics() -> None:
    """Why the chart brings its own metrics Services: the tenant Service (maybe a LoadBalancer)
    carries DICOM only."""
    rendered = manifests(value_set("tenants"))
    for tenant in select(rendered, "MultitenantDicomServer"):
        owner = Owner(name=tenant.name, namespace=str(tenant.namespace), uid="uid-1")
        for child in build_children(owner, tenant.obj["spec"]):
            if child["kind"] == "Service":
                assert [p["name"] for p in child["spec"]["ports"]] == ["dicom"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"watch": {"scope": "all"}, "metrics": {"serviceMonitor": {"enabled": True}}},
            "use metrics.podMonitor",
        ),
        ({"metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}}, "not both"),
    ],
)
def test_impossible_metrics_settings_are_refused(values: Object, message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError, match=message):
        manifests(values)


def test_no_monitor_by_default() -> None:
    kinds = {m.kind for m in manifests({})}
    assert not kinds & {"PodMonitor", "ServiceMonitor"}


def exported_metrics() -> dict[str, set[str]]:
    """Every series name a tenant server exports, with its labels, read from a real registry."""
    telemetry = Telemetry()
    telemetry.association_rejected("T")
    telemetry.tls_failure("T")
    telemetry.operation("T", "Find", "failure", 0.1)
    telemetry.retrieve_suboperations("T", "Move", {"failed": 1})
    telemetry.orthanc_call("GET /system", 0.1, True)
    telemetry.track_open_associations("T", lambda: 0)
    return {
        sample.name: set(sample.labels)
        for family in telemetry.registry.collect()
        for sample in family.samples
    }


def test_alerts_name_only_metrics_and_labels_the_servers_export() -> None:
    rendered = manifests(value_set("metrics"))
    rules = [rule for group in one(rendered, "PrometheusRule")["spec"]["groups"] for rule in group["rules"]]
    assert {rule["alert"] for rule in rules} >= {
        "MtdicomOrthancErrors",
        "MtdicomRetrieveSubOperationsFailing",
    }
    exported = exported_metrics()
    target_labels = {"namespace", "pod"}  # added by Prometheus to every scraped series
    for rule in rules:
        promql_parser.parse(rule["expr"])  # raises on a syntax error
        names = set(re.findall(r"\b(tenant_[a-z_]+)", rule["expr"]))
        assert names and names <= set(exported), (rule["alert"], names - set(exported))
        known = set().union(*(exported[name] for name in names)) | target_labels
        grouped = {
            label.strip() for by in re.findall(r"by \(([^)]*)\)", rule["expr"]) for label in by.split(",")
        }
        matched = set(re.findall(r"([a-z_]+)=\"", rule["expr"]))
        assert grouped | matched <= known, (rule["alert"], (grouped | matched) - known)
        assert "{{" not in rule["expr"]  # Helm rendered its values in
        for text in rule.get("annotations", {}).values():
            templated = set(re.findall(r"\$labels\.([a-z_]+)", text))
            assert templated <= grouped, (rule["alert"], templated - grouped)


def test_no_prometheus_rule_unless_asked() -> None:
    assert not [m for m in manifests({}) if m.kind == "PrometheusRule"]
