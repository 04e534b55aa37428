"""operator/rbac.py lists exactly what the operator calls: recorded against the emulator.

The operator runs a whole lifecycle in each scope (one namespace, all namespaces); every
request kopf and our client sent is turned into (API group, resource, verb) and compared
with the rules the Helm chart renders.
"""

from __future__ import annotations

from typing import Any

from mtdicom_operator.crd import KIND
from mtdicom_operator.rbac import ADMISSION_ONLY_RULES, CLUSTER_RULES, NAMESPACED_RULES

from tests.operator.conftest import new_resource, running_operator, wait_ready
from tests.operator.emulator import Emulator, wait_for

NS = "pacs"
NAME = "hello-tenants"
VERBS = {
    "LIST": "list",
    "WATCH": "watch",
    "FETCH": "get",
    "CREATE": "create",
    "UPDATE": "patch",
    "DELETE": "delete",
}
Permission = tuple[str, str, str]


def permissions(rules: list[dict[str, list[str]]]) -> set[Permission]:
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def used(emu: Emulator) -> tuple[set[Permission], set[Permission]]:
    """(namespaced, cluster-scoped) permissions the operator's requests needed."""
    namespaced: set[Permission] = set()
    cluster: set[Permission] = set()
    for request in emu.recorded():
        agent = request.headers.get("User-Agent", "")
        if agent.startswith("python-requests") or request.resource is None or request.resource.plural is None:
            continue  # the test's own client, or discovery (allowed to every authenticated user)
        assert request.action is not None, f"unexpected request {request.method} {request.url}"
        resource = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
        permission = (request.resource.group, resource, VERBS[request.action.name])
        if request.namespace is None and resource in {"namespaces", "customresourcedefinitions"}:
            cluster.add(permission)
        else:
            # kopf's --all-namespaces watches are cluster-wide URLs of namespaced resources:
            # a ClusterRole made of NAMESPACED_RULES grants them.
            namespaced.add(permission)
    return namespaced, cluster


def lifecycle(emu: Emulator) -> None:
    created = emu.create(KIND, NS, new_resource())
    resource = wait_ready(emu, NS, NAME)
    assert resource["metadata"]["uid"] == created["metadata"]["uid"]
    servers: list[dict[str, Any]] = resource["spec"]["servers"]
    servers[0]["labels"] = ["hello", "again"]
    servers[0]["service"] = {"type": "NodePort", "nodePort": 30443}
    emu.patch(KIND, NS, NAME, {"spec": {"servers": servers}})
    wait_ready(emu, NS, NAME)
    emu.patch(KIND, NS, NAME, {"spec": {"servers": servers[:1]}})
    wait_for(lambda: emu.names("Service", NS) == {"hello-tenants-hello"}, what="server removed")
    emu.delete("Service", NS, "hello-tenants-hello")  # drift, repaired by the status daemon
    wait_for(lambda: emu.names("Service", NS) == {"hello-tenants-hello"}, what="service recreated")
    emu.delete(KIND, NS, NAME)
    wait_for(lambda: emu.get(KIND, NS, NAME) is None, what="deleted")
    assert emu.collect_garbage(NS, created["metadata"]["uid"])


def test_rules_are_exactly_what_the_operator_uses(emulator: Emulator) -> None:
    with running_operator("--namespace", NS):
        lifecycle(emulator)
    _, cluster_one = used(emulator)
    assert ("", "namespaces", "list") in cluster_one  # kopf's namespace observer, namespaced mode only

    since = len(emulator.recorded())
    with running_operator("--all-namespaces"):
        lifecycle(emulator)
    all_requests = emulator.recorded()
    assert len(all_requests) > since
    namespaced_all, cluster_all = used(emulator)

    granted_namespaced = permissions(NAMESPACED_RULES)
    granted_cluster = permissions(CLUSTER_RULES)
    admission_only = permissions(ADMISSION_ONLY_RULES)
    assert namespaced_all - granted_namespaced == set()
    assert cluster_all - granted_cluster == set()
    assert granted_namespaced - admission_only - namespaced_all == set(), "a namespaced rule nobody uses"
    assert granted_cluster - cluster_all == set(), "a cluster rule nobody uses"


def test_rules_have_the_shape_the_chart_renders() -> None:
    for rule in (*NAMESPACED_RULES, *CLUSTER_RULES):
        assert set(rule) == {"apiGroups", "resources", "verbs"}
        assert all(isinstance(v, list) and v for v in rule.values())
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        assert not {"update", "deletecollection", "escalate", "bind", "impersonate"} & set(rule["verbs"]) or (
            rule in ADMISSION_ONLY_RULES
        )
    resources = {r for rule in (*NAMESPACED_RULES, *CLUSTER_RULES) for r in rule["resources"]}
    assert "secrets" not in resources, "the operator must never read Secrets"
