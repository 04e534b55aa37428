"""Naming, merge patches, spec validation and status conditions: the pure helpers."""

from __future__ import annotations

import copy
import re
from typing import Any

import kopf
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mtdicom_operator import naming
from mtdicom_operator.builders import Owner, desired_servers
from mtdicom_operator.crd import AET_PATTERN, apply_defaults, validate_spec
from mtdicom_operator.handlers.common import current_status
from mtdicom_operator.patching import apply_merge_patch, contains, merge_patch, patch_for, with_last_applied
from mtdicom_operator.status import (
    DeploymentState,
    DesiredServer,
    ServiceState,
    compute_status,
    observe,
    same_status,
    server_status,
)

from tests.operator.samples import example_resources, hello_spec

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
aets = st.from_regex(AET_PATTERN, fullmatch=True)
resource_names = st.from_regex(r"[a-z0-9]([-a-z0-9.]{0,60}[a-z0-9])?", fullmatch=True)


# --- naming -------------------------------------------------------------------------------


def test_readable_names_when_possible() -> None:
    assert naming.child_name("hello-tenants", "HELLO") == "hello-tenants-hello"
    assert naming.child_name("pacs", "CT-1") == "pacs-ct-1"
    hashed = naming.child_name("pacs", "CT_1")
    assert hashed.startswith("pacs-ct-1-") and hashed != "pacs-ct-1"


@settings(max_examples=100, deadline=None)
@given(resource_names, aets)
def test_child_names_are_valid_service_names(resource: str, aet: str) -> None:
    name = naming.child_name(resource, aet)
    assert DNS_1035.match(name) and len(name) <= 63
    for value in naming.child_labels(resource, aet, "0.1.0").values():
        assert LABEL_VALUE.match(value) and len(value) <= 63


@settings(max_examples=100, deadline=None)
@given(resource_names, aets, aets)
def test_distinct_aets_get_distinct_names(resource: str, first: str, second: str) -> None:
    if first.upper() != second.upper():
        assert naming.child_name(resource, first) != naming.child_name(resource, second)


def test_long_resource_names_stay_unique() -> None:
    long = "a" * 80
    names = {naming.child_name(long, f"T{i}") for i in range(50)}
    assert len(names) == 50
    assert naming.label_value(long) != naming.label_value(long + "b")


def test_image_version() -> None:
    assert naming.image_version("ghcr.io/mtdicom/multitenant-dicom:0.1.0") == "0.1.0"
    assert naming.image_version("registry:5000/x") is None
    assert naming.image_version("x:1.2@sha256:abc") == "1.2"


# --- merge patches --------------------------------------------------------------------

json_scalars = st.booleans() | st.integers(-5, 5) | st.sampled_from(["a", "b", ""])
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from("abcd"), inner, max_size=3),
    max_leaves=10,
)
json_objects = st.dictionaries(st.sampled_from("abcdef"), json_values, max_size=4)


@settings(max_examples=150, deadline=None)
@given(json_objects, json_objects, json_objects)
def test_patch_brings_live_to_desired_and_removes_what_we_dropped(
    live: dict[str, Any], desired: dict[str, Any], previous: dict[str, Any]
) -> None:
    patch = merge_patch(live, desired, previous)
    result = apply_merge_patch(live, patch)
    assert contains(result, desired)
    for key in previous:
        if key not in desired:
            assert key not in result
    # Idempotent: once applied, nothing more to do.
    assert merge_patch(result, desired, desired) == {}


def test_patch_is_empty_when_the_server_only_added_defaults() -> None:
    desired: dict[str, Any] = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}}
    live: dict[str, Any] = copy.deepcopy(desired)
    live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/dev/termination-log"
    live["spec"]["progressDeadlineSeconds"] = 600
    assert merge_patch(live, desired, desired) == {}


def test_a_removed_annotation_and_source_ranges_are_deleted() -> None:
    old = with_last_applied(
        {
            "metadata": {"name": "s", "annotations": {"lb": "x"}},
            "spec": {"type": "LoadBalancer", "loadBalancerSourceRanges": ["10.0.0.0/8"]},
        }
    )
    live = copy.deepcopy(old)
    live["spec"]["clusterIP"] = "10.1.2.3"
    new = with_last_applied({"metadata": {"name": "s", "annotations": {}}, "spec": {"type": "ClusterIP"}})
    patch = patch_for(live, new)
    assert patch["spec"] == {"type": "ClusterIP", "loadBalancerSourceRanges": None}
    assert patch["metadata"]["annotations"]["lb"] is None
    result = apply_merge_patch(live, patch)
    assert result["spec"] == {"type": "ClusterIP", "clusterIP": "10.1.2.3"}
    assert patch_for(result, new) == {}


# --- spec validation --------------------------------------------------------------------


def test_examples_are_valid() -> None:
    resources = example_resources()
    assert {r["metadata"]["name"] for r in resources} >= {"hello-tenants", "radiology"}
    for resource in resources:
        assert validate_spec(resource["spec"]) == []


def test_hello_example_is_the_agreed_sample() -> None:
    servers = {s["aet"]: s for s in hello_spec()["servers"]}
    assert servers["HELLO"]["port"] == 4343 and servers["HELLO"]["labels"] == ["hello"]
    assert servers["WORLD"]["port"] == 4344 and servers["WORLD"]["labels"] == ["world"]


def broken(change: Any) -> list[str]:
    spec = hello_spec()
    change(spec)
    return [str(error) for error in validate_spec(spec)]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s["servers"][0].update(aet="A" * 17), "servers[0].aet"),
        (lambda s: s["servers"][0].update(aet="BACK\\SLASH"), "servers[0].aet"),
        (lambda s: s["servers"][0].update(aet=" LEAD"), "servers[0].aet"),
        (lambda s: s["servers"][0].update(port=0), "servers[0].port"),
        (lambda s: s["servers"][0].update(port=65536), "servers[0].port"),
        (lambda s: s["servers"][0].update(labels=["no spaces"]), "servers[0].labels[0]"),
        (lambda s: s["servers"][0].update(labels=[]), "labels must not be empty"),
        (lambda s: s["servers"][0].update(labelsConstraint="Some"), "labelsConstraint"),
        (lambda s: s["servers"][0].update(labelsStoreLevels=["Image"]), "labelsStoreLevels[0]"),
        (lambda s: s["servers"][1].update(aet="hello"), "already used"),
        (lambda s: s["servers"][1].update(port=4343), "4343 is already used"),
        (
            lambda s: s["servers"][0].update(service={"type": "ClusterIP", "nodePort": 30000}),
            "nodePort needs",
        ),
        (lambda s: s["servers"][0].update(service={"type": "NodePort", "nodePort": 80}), "nodePort"),
        (
            lambda s: s["servers"][0].update(service={"type": "NodePort", "loadBalancerSourceRanges": []}),
            "need type",
        ),
        (
            lambda s: s["servers"][0].update(allowedMoveDestinations=["nowhere"]),
            "not a key of spec.modalities",
        ),
        (lambda s: s["orthanc"].update(url="orthanc:8042"), "orthanc.url"),
        (lambda s: s.update(servers=[]), "at least 1"),
        (lambda s: s.update(imagePullPolicy="Sometimes"), "imagePullPolicy"),
        (lambda s: s["servers"][0].update(replcas=2), "not a known field"),
        (lambda s: s.pop("orthanc"), "orthanc: is required"),
    ],
)
def test_invalid_specs_are_refused_with_the_field_named(change: Any, expected: str) -> None:
    errors = broken(change)
    assert any(expected in error for error in errors), errors


def test_defaults_match_the_plugin() -> None:
    server = apply_defaults(hello_spec())["servers"][0]
    assert server["labelsConstraint"] == "All"
    assert server["labelsStoreLevels"] == ["Study", "Series", "Instance"]
    assert server["storeIsolation"] == "Strict"
    assert server["replicas"] == 1
    assert server["service"] == {"type": "ClusterIP"}


# --- status ---------------------------------------------------------------------------

DESIRED = DesiredServer(
    aet="HELLO", port=4343, name="t-hello", replicas=2, config_hash="h1", namespace="pacs"
)


def deployment(**overrides: Any) -> DeploymentState:
    values: dict[str, Any] = {
        "name": "t-hello",
        "replicas": 2,
        "ready_replicas": 2,
        "updated_replicas": 2,
        "available_replicas": 2,
        "generation": 4,
        "observed_generation": 4,
        "config_hash": "h1",
        "failure": None,
    }
    values.update(overrides)
    return DeploymentState(**values)


SERVICE = ServiceState(name="t-hello", type="ClusterIP", port=4343, node_port=None, ingress=())


@pytest.mark.parametrize(
    ("state", "service", "ready", "message"),
    [
        (None, SERVICE, False, "Deployment not created yet"),
        (deployment(config_hash="old"), SERVICE, False, "Deployment not updated yet"),
        (deployment(observed_generation=3), SERVICE, False, "rollout not started yet"),
        (deployment(updated_replicas=1), SERVICE, False, "1/2 pods updated"),
        (deployment(ready_replicas=1), SERVICE, False, "1/2 pods ready"),
        (deployment(), None, False, "Service not created yet"),
        (deployment(), SERVICE, True, None),
        (
            deployment(failure="ProgressDeadlineExceeded: too slow"),
            SERVICE,
            False,
            "ProgressDeadlineExceeded",
        ),
    ],
)
def test_server_readiness(
    state: DeploymentState | None, service: ServiceState | None, ready: bool, message: str | None
) -> None:
    entry = server_status(DESIRED, state, service)
    assert entry["ready"] is ready
    if message is None:
        assert "message" not in entry
        assert entry["endpoint"] == "t-hello.pacs.svc:4343"
    else:
        assert message in entry["message"]


def test_endpoints_per_service_type() -> None:
    node_port = ServiceState(name="t-hello", type="NodePort", port=4343, node_port=31000, ingress=())
    balancer = ServiceState(
        name="t-hello", type="LoadBalancer", port=4343, node_port=31000, ingress=("203.0.113.9",)
    )
    pending = ServiceState(name="t-hello", type="LoadBalancer", port=4343, node_port=31000, ingress=())
    assert server_status(DESIRED, deployment(), node_port)["endpoint"] == "<any-node>:31000"
    assert server_status(DESIRED, deployment(), balancer)["endpoint"] == "203.0.113.9:4343"
    assert server_status(DESIRED, deployment(), pending)["endpoint"] == "<pending>:4343"


def conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_conditions_through_a_lifecycle() -> None:
    entries, failures = observe([DESIRED], [deployment(ready_replicas=0)], [SERVICE])
    rolling = compute_status(
        generation=4, reconciled=True, servers=entries, failures=failures, timestamp="t1"
    )
    assert conditions(rolling) == {
        "Ready": ("False", "RollingOut"),
        "Progressing": ("True", "RollingOut"),
        "Degraded": ("False", "AsExpected"),
        "Reconciling": ("True", "RollingOut"),  # kstatus: InProgress
        "Stalled": ("False", "AsExpected"),
    }
    assert rolling["readyServers"] == "0/1"
    assert all(c["observedGeneration"] == 4 for c in rolling["conditions"])

    entries, failures = observe([DESIRED], [deployment()], [SERVICE])
    ready = compute_status(
        generation=4,
        reconciled=True,
        servers=entries,
        failures=failures,
        previous_conditions=rolling["conditions"],
        timestamp="t2",
    )
    assert conditions(ready)["Ready"] == ("True", "AllServersReady")
    times = {c["type"]: c["lastTransitionTime"] for c in ready["conditions"]}
    assert times == {
        "Ready": "t2",
        "Progressing": "t2",
        "Degraded": "t1",
        "Reconciling": "t2",
        "Stalled": "t1",
    }
    assert conditions(ready)["Reconciling"] == ("False", "Complete")  # kstatus: Current

    stale = compute_status(
        generation=5, reconciled=False, servers=entries, previous_conditions=ready["conditions"]
    )
    assert conditions(stale)["Ready"] == ("False", "Reconciling")

    entries, failures = observe([DESIRED], [deployment(failure="ProgressDeadlineExceeded: x")], [SERVICE])
    failed = compute_status(generation=4, reconciled=True, servers=entries, failures=failures)
    assert conditions(failed) == {
        "Ready": ("False", "DeploymentFailed"),
        "Progressing": ("False", "DeploymentFailed"),
        "Degraded": ("True", "DeploymentFailed"),
        "Reconciling": ("False", "DeploymentFailed"),
        "Stalled": ("True", "DeploymentFailed"),  # kstatus: Failed
    }
    invalid = compute_status(generation=4, reconciled=False, servers=[], invalid="spec.x: bad")
    assert conditions(invalid)["Degraded"] == ("True", "InvalidSpec")
    assert conditions(invalid)["Progressing"] == ("False", "InvalidSpec")
    assert conditions(invalid)["Stalled"] == ("True", "InvalidSpec")
    retrying = compute_status(generation=4, reconciled=False, servers=[], reconcile_error="403 Forbidden")
    assert conditions(retrying) == {
        "Ready": ("False", "ReconcileFailed"),
        "Progressing": ("True", "Retrying"),
        "Degraded": ("True", "ReconcileFailed"),
        "Reconciling": ("True", "Retrying"),  # retried with backoff: not stalled
        "Stalled": ("False", "AsExpected"),
    }


def test_same_status_ignores_fields_it_does_not_set() -> None:
    new = {"readyServers": "1/1"}
    assert same_status({"readyServers": "1/1", "observedGeneration": 3}, new)
    assert not same_status({"readyServers": "0/1"}, new)
    assert not same_status(None, new)


def test_deployment_state_from_a_body() -> None:
    body = {
        "metadata": {"name": "d", "generation": 2},
        "spec": {"replicas": 3, "template": {"metadata": {"annotations": {"mtdicom.io/config-hash": "abc"}}}},
        "status": {
            "observedGeneration": 2,
            "readyReplicas": 1,
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": "slow",
                }
            ],
        },
    }
    state = DeploymentState.from_body(body)
    assert state.replicas == 3 and state.ready_replicas == 1 and state.updated_replicas == 0
    assert state.config_hash == "abc"
    assert state.failure == "ProgressDeadlineExceeded: slow"


def test_a_restarted_operator_keeps_a_ready_resource_ready() -> None:
    spec = hello_spec()
    body: Any = {
        "apiVersion": "mtdicom.io/v1alpha1",
        "kind": "MultitenantDicomServer",
        "metadata": {"name": "t", "namespace": "pacs", "uid": "u1", "generation": 4},
        "spec": spec,
        "status": {"observedGeneration": 4},
    }
    desired = desired_servers(Owner("t", "pacs", "u1", 4), spec)
    deployments = [DeploymentState(d.name, 1, 1, 1, 1, 1, 1, d.config_hash, None) for d in desired]
    services = [ServiceState(d.name, "ClusterIP", d.port, None, ()) for d in desired]
    index_d: Any = {("pacs", "u1"): deployments}
    index_s: Any = {("pacs", "u1"): services}
    status = current_status(kopf.Body(body), kopf.Memo(), index_d, index_s)
    assert conditions(status)["Ready"] == ("True", "AllServersReady")
    body["metadata"]["generation"] = 5  # a spec change the new run has not applied yet
    status = current_status(kopf.Body(body), kopf.Memo(), index_d, index_s)
    assert conditions(status)["Ready"] == ("False", "Reconciling")
