"""The rendered RBAC grants exactly what the operator calls: operator/rbac.py, the list the
operator's own tests check against the requests it really sends."""

from __future__ import annotations

import pytest
from mtdicom_operator.rbac import CLUSTER_RULES, NAMESPACED_RULES

from tests.chart.helpers import NAMESPACE, Manifest, Object, manifests, rule_triples, select, value_set

OPERATOR_SA = ("mtdicom-multitenant-dicom", NAMESPACE)
NAMESPACED = rule_triples(NAMESPACED_RULES)
CLUSTER = rule_triples(CLUSTER_RULES)


def bound_to_operator(binding: Object, sa: tuple[str, str] = OPERATOR_SA) -> bool:
    return any(
        s["kind"] == "ServiceAccount" and (s["name"], s["namespace"]) == sa for s in binding["subjects"]
    )


def grants(
    rendered: list[Manifest], sa: tuple[str, str] = OPERATOR_SA
) -> dict[str | None, set[tuple[str, str, str]]]:
    """Permissions of the operator's ServiceAccount: namespace (None = cluster-wide) -> triples."""
    roles = {(m.kind, m.namespace, m.name): m.obj for m in rendered if m.kind in {"Role", "ClusterRole"}}
    granted: dict[str | None, set[tuple[str, str, str]]] = {}
    for manifest in rendered:
        if manifest.kind not in {"RoleBinding", "ClusterRoleBinding"} or not bound_to_operator(
            manifest.obj, sa
        ):
            continue
        ref = manifest.obj["roleRef"]
        role_ns = manifest.namespace if ref["kind"] == "Role" else None
        role = roles[(ref["kind"], role_ns, ref["name"])]  # a dangling roleRef fails here
        scope = manifest.namespace if manifest.kind == "RoleBinding" else None
        granted.setdefault(scope, set()).update(rule_triples(role["rules"]))
    return granted


def test_the_operator_rule_lists_are_not_empty() -> None:
    assert NAMESPACED and CLUSTER


def test_single_namespace_gets_a_role_there_and_only_cluster_reads() -> None:
    assert grants(manifests({})) == {NAMESPACE: NAMESPACED, None: CLUSTER}
    assert grants(manifests(value_set("single-namespace"))) == {NAMESPACE: NAMESPACED, None: CLUSTER}


def test_namespace_list_gets_a_role_in_each_listed_namespace_only() -> None:
    rendered = manifests(value_set("namespace-list"))
    assert grants(rendered) == {"radiology": NAMESPACED, "cardiology": NAMESPACED, None: CLUSTER}
    # Nothing in the release namespace itself: it is not watched.
    assert not select(rendered, "Role", namespace=NAMESPACE)


def test_all_namespaces_gets_cluster_roles() -> None:
    rendered = manifests(value_set("cluster-wide"))
    assert grants(rendered) == {None: NAMESPACED | CLUSTER}
    assert not select(rendered, "Role") and not select(rendered, "RoleBinding")


def test_a_foreign_service_account_is_bound() -> None:
    values = value_set("external-crd")
    rendered = manifests(values)
    assert not select(rendered, "ServiceAccount")
    sa = (values["serviceAccount"]["name"], NAMESPACE)
    assert grants(rendered, sa) == {NAMESPACE: NAMESPACED, None: CLUSTER}
    deployment = select(rendered, "Deployment")[0].obj
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == sa[0]


def test_rbac_can_be_left_to_the_cluster_admin() -> None:
    rendered = manifests({"rbac": {"create": False}})
    kinds = {m.kind for m in rendered}
    assert not kinds & {"Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"}


@pytest.mark.parametrize("values", [{}, {"watch": {"scope": "all"}}])
def test_user_roles_only_concern_multitenantdicomservers(values: Object) -> None:
    rendered = manifests(values)
    user_roles = [m.obj for m in select(rendered, "ClusterRole") if m.name.endswith(("-edit", "-view"))]
    assert len(user_roles) == 2
    for role in user_roles:
        assert {group for group, _, _ in rule_triples(role["rules"])} == {"mtdicom.io"}
        aggregate = {
            k for k in role["metadata"]["labels"] if k.startswith("rbac.authorization.k8s.io/aggregate-to-")
        }
        assert aggregate
    view = next(r for r in user_roles if r["metadata"]["name"].endswith("-view"))
    assert {verb for _, _, verb in rule_triples(view["rules"])} == {"get", "list", "watch"}
    # Not bound to anyone: they only extend the built-in admin/edit/view roles.
    names = {r["metadata"]["name"] for r in user_roles}
    assert not any(
        m.obj["roleRef"]["name"] in names for m in rendered if m.kind in {"RoleBinding", "ClusterRoleBinding"}
    )
    rendered = manifests({**values, "rbac": {"aggregateToDefaultRoles": False}})
    assert not [m for m in select(rendered, "ClusterRole") if m.name.endswith(("-edit", "-view"))]
