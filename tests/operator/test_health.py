"""The documented Argo CD health script and Flux expressions on the operator's real statuses.

The statuses are produced by the operator's own status code for each situation (not written
by hand), then judged by the Lua script of docs/kubernetes.md (the same as docs/gitops.md's)
in Lua 5.1, Argo CD's dialect, by the Flux ``healthCheckExprs`` of docs/gitops.md, and by
kstatus's rules for custom resources (what Flux uses when no expression is given).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import celpy
import pytest
import yaml
from lupa import lua51
from mtdicom_operator.status import DeploymentState, DesiredServer, ServiceState, compute_status, observe

from tests.operator.samples import REPO, hello_resource

KUBERNETES = REPO / "docs" / "kubernetes.md"
GITOPS = REPO / "docs" / "gitops.md"

SERVER = DesiredServer(
    aet="HELLO", port=4343, name="hello-tenants-hello", replicas=1, config_hash="h", namespace="pacs"
)
SERVICE = ServiceState(name="hello-tenants-hello", type="ClusterIP", port=4343, node_port=None, ingress=())


def deployment(ready: int, failure: str | None = None) -> DeploymentState:
    return DeploymentState("hello-tenants-hello", 1, ready, 1, ready, 2, 2, "h", failure)


def resource(generation: int, status: dict[str, Any] | None, observed: int | None = None) -> dict[str, Any]:
    obj = hello_resource()
    obj["metadata"].update(namespace="pacs", generation=generation)
    if status is not None:
        obj["status"] = dict(status)
        if observed is not None:
            obj["status"]["observedGeneration"] = observed
    return obj


def status_for(state: DeploymentState, **kwargs: Any) -> dict[str, Any]:
    entries, failures = observe([SERVER], [state], [SERVICE])
    return compute_status(servers=entries, failures=failures, **kwargs)


CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    "no status yet": (resource(1, None), "Progressing", "in progress"),
    "pods starting": (
        resource(2, status_for(deployment(0), generation=2, reconciled=True), 2),
        "Progressing",
        "in progress",
    ),
    "ready": (resource(2, status_for(deployment(1), generation=2, reconciled=True), 2), "Healthy", "current"),
    "ready, spec changed since": (
        resource(3, status_for(deployment(1), generation=2, reconciled=True), 2),
        "Progressing",
        "in progress",
    ),
    "new spec not applied yet": (
        resource(3, status_for(deployment(1), generation=3, reconciled=False), 2),
        "Progressing",
        "in progress",
    ),
    "rollout stuck": (
        resource(
            2, status_for(deployment(0, "ProgressDeadlineExceeded: x"), generation=2, reconciled=True), 2
        ),
        "Degraded",
        "failed",
    ),
    "invalid spec": (
        resource(
            2, compute_status(generation=2, reconciled=False, servers=[], invalid="spec.servers[0].port"), 2
        ),
        "Degraded",
        "failed",
    ),
    "API error, retrying": (
        resource(2, compute_status(generation=2, reconciled=False, servers=[], reconcile_error="403"), 1),
        "Degraded",
        "failed",
    ),
}


# kstatus's verdict where it differs from the expressions': with no status at all there is
# nothing to go on, so kstatus calls the resource Current (the expressions wait for Ready); an
# API error being retried is still in progress for kstatus (the expressions fail on Degraded).
KSTATUS = {case: flux for case, (_, _, flux) in CASES.items()} | {
    "no status yet": "current",
    "API error, retrying": "in progress",
}


def kstatus(obj: dict[str, Any]) -> str:
    """sigs.k8s.io/cli-utils kstatus for a custom resource (its generic rules, in order):
    observedGeneration behind metadata.generation is InProgress; a ``Reconciling=True``
    condition InProgress; ``Stalled=True`` Failed; anything else Current."""
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is not None and observed != obj["metadata"].get("generation"):
        return "in progress"
    for condition in status.get("conditions") or []:
        if condition["type"] == "Reconciling" and condition["status"] == "True":
            return "in progress"
        if condition["type"] == "Stalled" and condition["status"] == "True":
            return "failed"
    return "current"


@pytest.mark.parametrize("case", list(CASES))
def test_flux_kstatus_without_expressions(case: str) -> None:
    assert kstatus(CASES[case][0]) == KSTATUS[case]


def lua_block(path: Any) -> str:
    text = path.read_text()
    if path == GITOPS:
        (block,) = re.findall(r"```yaml\n(apiVersion: v1\nkind: ConfigMap.*?)```", text, re.S)
        script: str = yaml.safe_load(block)["data"][
            "resource.customizations.health.mtdicom.io_MultitenantDicomServer"
        ]
        return script
    (lua,) = re.findall(r"```lua\n(.*?)```", text, re.S)
    return str(lua)


def test_the_documented_script_is_gitops_doc_script() -> None:
    assert lua_block(KUBERNETES).strip() == lua_block(GITOPS).strip()


@pytest.mark.parametrize("case", list(CASES))
def test_argo_cd_health(case: str) -> None:
    obj, argo, _ = CASES[case]
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(copy.deepcopy(obj), recursive=True)
    result = lua.execute(lua_block(KUBERNETES))
    assert result["status"] == argo
    assert result["message"]


def flux_expressions() -> dict[str, str]:
    docs = [
        d
        for block in re.findall(r"```yaml\n(.*?)```", GITOPS.read_text(), re.S)
        for d in yaml.safe_load_all(block)
    ]
    (kustomization,) = [d for d in docs if d and d.get("kind") == "Kustomization"]
    (check,) = kustomization["spec"]["healthCheckExprs"]
    return {key: check[key] for key in ("current", "failed") if key in check}


@pytest.mark.parametrize("case", list(CASES))
def test_flux_health(case: str) -> None:
    obj, _, flux = CASES[case]
    env = celpy.Environment()
    activation = {key: celpy.json_to_cel(value) for key, value in obj.items()}

    def holds(expression: str) -> bool:
        return bool(env.program(env.compile(expression)).evaluate(activation))

    expressions = flux_expressions()
    verdict = (
        "failed"
        if holds(expressions["failed"])
        else "current"
        if holds(expressions["current"])
        else "in progress"
    )
    assert verdict == flux
