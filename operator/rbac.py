"""The operator's Kubernetes permissions: the single source for the Helm chart and the docs.

Each rule lists exactly the verbs the operator's code (ours and kopf's) sends, so a
ServiceAccount bound to these rules can do nothing else. ``tests/operator`` records the
requests the running operator makes against the emulated API server and compares them with
these lists; the chart renders its Role/ClusterRole from them.

``NAMESPACED_RULES`` are needed in every namespace the operator watches (a Role per
namespace, or a ClusterRole when it runs with ``--all-namespaces``). ``CLUSTER_RULES`` are
always cluster-wide.
"""

from __future__ import annotations

from typing import Final

Rule = dict[str, list[str]]

GROUP: Final = "mtdicom.io"
PLURAL: Final = "multitenantdicomservers"

CLUSTER_RULES: Final[list[Rule]] = [
    # kopf scans CRDs at startup and watches them to notice the resource appearing/vanishing.
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["list", "watch"],
    },
    # In namespaced mode (--namespace), kopf lists and watches namespaces to follow them
    # appearing and disappearing. Without the grant kopf does fall back to the given names,
    # but only after retrying the refused list for about a minute at every start.
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]},
]

NAMESPACED_RULES: Final[list[Rule]] = [
    # kopf posts its handler logs and our kopf.info/warn calls as core/v1 Events.
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
    # kopf watches the custom resources and patches its progress/diff-base annotations.
    {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["list", "watch", "patch"]},
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["patch"]},
    # Never called by the operator: clusters with the OwnerReferencesPermissionEnforcement
    # admission plugin (e.g. OpenShift) require it to set blockOwnerDeletion on children.
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/finalizers"], "verbs": ["update"]},
    # Children: listed by owner (no get), created, merge-patched, deleted when a server goes.
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list", "create", "patch", "delete"]},
    # Services and Deployments are also watched: their state feeds the CR's status.
    {
        "apiGroups": [""],
        "resources": ["services"],
        "verbs": ["list", "watch", "create", "patch", "delete"],
    },
    {
        "apiGroups": ["apps"],
        "resources": ["deployments"],
        "verbs": ["list", "watch", "create", "patch", "delete"],
    },
]

# Rules that no request of the operator exercises; kept for admission plugins (see above).
ADMISSION_ONLY_RULES: Final[list[Rule]] = [NAMESPACED_RULES[3]]
