"""The resource's status: per-server readiness and Ready/Progressing/Degraded conditions.

Conditions follow metav1.Condition (type, status, observedGeneration, lastTransitionTime,
reason, message) so that ``kubectl wait --for=condition=Ready`` and the Argo CD health
script in docs/kubernetes.md understand them. ``Reconciling`` and ``Stalled`` repeat what
``Progressing`` and ``Degraded`` say in the kstatus convention (sigs.k8s.io/cli-utils), the
only conditions Flux's health checks read on a custom resource: without them Flux would call
a resource whose pods never start "Current". Everything here is pure: the inputs are what the indexes saw of the
children.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mtdicom_operator import naming

Condition = dict[str, Any]

READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
RECONCILING = "Reconciling"  # kstatus: the spec is not realised yet, work is going on
STALLED = "Stalled"  # kstatus: no progress without someone changing something


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _owner_uid(body: Mapping[str, Any]) -> str | None:
    for reference in body.get("metadata", {}).get("ownerReferences") or []:
        if reference.get("kind") == "MultitenantDicomServer" and reference.get("controller"):
            return str(reference.get("uid") or "") or None
    return None


@dataclass(frozen=True)
class DeploymentState:
    """What the status needs of a Deployment (kept in a kopf index, so small and immutable)."""

    name: str
    replicas: int
    ready_replicas: int
    updated_replicas: int
    available_replicas: int
    generation: int | None
    observed_generation: int | None
    config_hash: str | None
    failure: str | None

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> DeploymentState:
        meta = body.get("metadata", {})
        spec = body.get("spec", {})
        status = body.get("status") or {}
        template_annotations = (spec.get("template", {}).get("metadata", {}) or {}).get("annotations") or {}
        failure = None
        for condition in status.get("conditions") or []:
            if condition.get("type") == "Progressing" and condition.get("status") == "False":
                failure = (
                    f"{condition.get('reason', 'ProgressFailed')}: {condition.get('message', '')}".strip()
                )
            if condition.get("type") == "ReplicaFailure" and condition.get("status") == "True":
                failure = (
                    f"{condition.get('reason', 'ReplicaFailure')}: {condition.get('message', '')}".strip()
                )
        generation = meta.get("generation")
        observed = status.get("observedGeneration")
        return cls(
            name=meta.get("name", ""),
            replicas=int(spec.get("replicas", 1)),
            ready_replicas=int(status.get("readyReplicas") or 0),
            updated_replicas=int(status.get("updatedReplicas") or 0),
            available_replicas=int(status.get("availableReplicas") or 0),
            generation=int(generation) if generation is not None else None,
            observed_generation=int(observed) if observed is not None else None,
            config_hash=template_annotations.get(naming.ANNOTATION_CONFIG_HASH),
            failure=failure,
        )


@dataclass(frozen=True)
class ServiceState:
    name: str
    type: str
    port: int | None
    node_port: int | None
    ingress: tuple[str, ...]

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ServiceState:
        spec = body.get("spec", {})
        ports = spec.get("ports") or [{}]
        ingress = ((body.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        return cls(
            name=body.get("metadata", {}).get("name", ""),
            type=spec.get("type", "ClusterIP"),
            port=ports[0].get("port"),
            node_port=ports[0].get("nodePort"),
            ingress=tuple(str(entry.get("ip") or entry.get("hostname") or "") for entry in ingress),
        )


def index_key(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(namespace, owner uid) of a child, or None if no MultitenantDicomServer controls it."""
    uid = _owner_uid(body)
    namespace = body.get("metadata", {}).get("namespace")
    return (str(namespace), uid) if uid and namespace else None


@dataclass(frozen=True)
class DesiredServer:
    aet: str
    port: int
    name: str
    replicas: int
    config_hash: str
    namespace: str


def endpoint(server: DesiredServer, service: ServiceState | None) -> str:
    if service is None:
        return ""
    if service.type == "LoadBalancer":
        return f"{service.ingress[0]}:{server.port}" if service.ingress else f"<pending>:{server.port}"
    if service.type == "NodePort":
        return f"<any-node>:{service.node_port}" if service.node_port else "<pending>"
    return f"{service.name}.{server.namespace}.svc:{server.port}"


def server_status(
    server: DesiredServer, deployment: DeploymentState | None, service: ServiceState | None
) -> dict[str, Any]:
    """One entry of ``status.servers``; ``message`` says what the server waits for."""
    ready = False
    message = ""
    if deployment is None:
        message = "Deployment not created yet"
    elif deployment.failure:
        message = deployment.failure
    elif deployment.config_hash != server.config_hash or deployment.replicas != server.replicas:
        message = "Deployment not updated yet"
    elif deployment.generation is not None and (deployment.observed_generation or 0) < deployment.generation:
        message = "rollout not started yet"
    elif server.replicas == 0:
        ready, message = True, "scaled to zero"
    elif deployment.updated_replicas < server.replicas:
        message = f"{deployment.updated_replicas}/{server.replicas} pods updated"
    elif deployment.ready_replicas < server.replicas or deployment.available_replicas < server.replicas:
        message = (
            f"{min(deployment.ready_replicas, deployment.available_replicas)}/{server.replicas} pods ready"
        )
    elif service is None:
        message = "Service not created yet"
    else:
        ready = True
    entry: dict[str, Any] = {
        "aet": server.aet,
        "port": server.port,
        "deployment": server.name,
        "ready": ready,
        "replicas": server.replicas,
        "readyReplicas": deployment.ready_replicas if deployment else 0,
        "serviceType": service.type if service else "",
        "endpoint": endpoint(server, service),
    }
    if message:
        entry["message"] = message
    return entry


def observe(
    desired: list[DesiredServer],
    deployments: Iterable[DeploymentState],
    services: Iterable[ServiceState],
) -> tuple[list[dict[str, Any]], list[str]]:
    """``status.servers`` entries and the failures among them, from what the indexes hold."""
    by_name_d = {d.name: d for d in deployments}
    by_name_s = {s.name: s for s in services}
    entries = []
    failures = []
    for server in desired:
        deployment = by_name_d.get(server.name)
        entries.append(server_status(server, deployment, by_name_s.get(server.name)))
        if deployment is not None and deployment.failure:
            failures.append(f"{server.aet}: {deployment.failure}")
    return entries, failures


def _condition(type_: str, status: bool, reason: str, message: str, generation: int | None) -> Condition:
    condition: Condition = {
        "type": type_,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def _stamp(
    conditions: list[Condition], previous: Iterable[Mapping[str, Any]], timestamp: str
) -> list[Condition]:
    """Keep lastTransitionTime while a condition's status is unchanged."""
    before = {c.get("type"): c for c in previous or []}
    for condition in conditions:
        old = before.get(condition["type"])
        keep = old is not None and old.get("status") == condition["status"] and old.get("lastTransitionTime")
        condition["lastTransitionTime"] = old["lastTransitionTime"] if keep and old else timestamp
    return conditions


def _kstatus(conditions: list[Condition], generation: int | None) -> list[Condition]:
    """Reconciling and Stalled, derived from Progressing and Degraded.

    Stalled is a Degraded state that is not retried (an invalid spec, a Deployment past its
    progress deadline); a reconcile error being retried with backoff is still Reconciling.
    """
    by_type = {c["type"]: c for c in conditions}
    progressing, degraded = by_type[PROGRESSING], by_type[DEGRADED]
    stalled = degraded["status"] == "True" and progressing["status"] == "False"
    return [
        _condition(
            RECONCILING,
            progressing["status"] == "True",
            progressing["reason"],
            progressing["message"] if progressing["status"] == "True" else "",
            generation,
        ),
        _condition(
            STALLED,
            stalled,
            degraded["reason"] if stalled else "AsExpected",
            degraded["message"] if stalled else "",
            generation,
        ),
    ]


def _summary(entries: list[dict[str, Any]], limit: int = 5) -> str:
    waiting = [f"{e['aet']}: {e.get('message', 'not ready')}" for e in entries if not e["ready"]]
    text = "; ".join(waiting[:limit])
    return text + (f"; and {len(waiting) - limit} more" if len(waiting) > limit else "")


def compute_status(
    *,
    generation: int | None,
    reconciled: bool,
    servers: list[dict[str, Any]],
    previous_conditions: Iterable[Mapping[str, Any]] = (),
    invalid: str | None = None,
    reconcile_error: str | None = None,
    failures: list[str] | None = None,
    timestamp: str | None = None,
) -> dict[str, Any]:
    """The whole status but ``observedGeneration``, which a successful reconcile sets (and the
    handlers set for a spec they found invalid, see handlers/common.py).

    ``generation`` is the resource's metadata.generation the conditions are about;
    ``reconciled`` whether the children were brought to that generation's spec.

    ``failures`` are servers whose Deployment reports it cannot make progress, which waiting
    will not fix (Degraded rather than Progressing).
    """
    failures = failures or []
    timestamp = timestamp or now()
    ready_count = sum(1 for entry in servers if entry["ready"])
    counts = f"{ready_count}/{len(servers)}"
    if invalid is not None:
        conditions = [
            _condition(READY, False, "InvalidSpec", invalid, generation),
            _condition(
                PROGRESSING,
                False,
                "InvalidSpec",
                "fix the spec; nothing is retried until it changes",
                generation,
            ),
            _condition(DEGRADED, True, "InvalidSpec", invalid, generation),
        ]
    elif reconcile_error is not None:
        conditions = [
            _condition(READY, False, "ReconcileFailed", reconcile_error, generation),
            _condition(
                PROGRESSING, True, "Retrying", f"retrying with backoff: {reconcile_error}", generation
            ),
            _condition(DEGRADED, True, "ReconcileFailed", reconcile_error, generation),
        ]
    elif not reconciled:
        message = "the current spec is not applied to the children yet"
        conditions = [
            _condition(READY, False, "Reconciling", message, generation),
            _condition(PROGRESSING, True, "Reconciling", message, generation),
            _condition(DEGRADED, False, "AsExpected", "", generation),
        ]
    else:
        if failures:
            message = "; ".join(failures[:5]) + (
                f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
            )
            conditions = [
                _condition(READY, False, "DeploymentFailed", message, generation),
                _condition(PROGRESSING, False, "DeploymentFailed", message, generation),
                _condition(DEGRADED, True, "DeploymentFailed", message, generation),
            ]
        elif ready_count < len(servers):
            message = f"{counts} servers ready; {_summary(servers)}"
            conditions = [
                _condition(READY, False, "RollingOut", message, generation),
                _condition(PROGRESSING, True, "RollingOut", message, generation),
                _condition(DEGRADED, False, "AsExpected", "", generation),
            ]
        else:
            message = f"{counts} servers ready"
            conditions = [
                _condition(READY, True, "AllServersReady", message, generation),
                _condition(PROGRESSING, False, "Complete", message, generation),
                _condition(DEGRADED, False, "AsExpected", "", generation),
            ]
    conditions += _kstatus(conditions, generation)
    return {
        "conditions": _stamp(conditions, previous_conditions, timestamp),
        "readyServers": counts,
        "servers": servers,
    }


def same_status(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether patching ``new`` would change anything (ignoring fields ``new`` leaves out)."""
    old = old or {}
    return all(old.get(key) == value for key, value in new.items())
