"""Pure builders: a MultitenantDicomServer in, the children's manifests out.

Nothing here talks to Kubernetes, so every rendering decision is unit-tested and validated
against the real Kubernetes schemas without a cluster (the dask-kubernetes ``build_*_spec``
pattern). The tenant-server configuration follows docs/tenant-server-contract.md; the
operator never imports the tenant server.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Final

from mtdicom_operator import naming
from mtdicom_operator.crd import API_VERSION, KIND, OPERATIONS, apply_defaults, server_schema
from mtdicom_operator.status import DesiredServer

CONFIG_DIR: Final = "/etc/tenant-server"
CONFIG_KEY: Final = "config.json"
CONFIG_PATH: Final = f"{CONFIG_DIR}/{CONFIG_KEY}"
TLS_DIR: Final = f"{CONFIG_DIR}/tls"
ORTHANC_CA_PATH: Final = f"{CONFIG_DIR}/orthanc-ca/ca.crt"
HEALTH_PORT: Final = 8080
CONTAINER_NAME: Final = "tenant-server"
COMMAND: Final = ["tenant-server"]

Manifest = dict[str, Any]


@dataclass(frozen=True)
class Owner:
    """The identity of the custom resource that owns the children."""

    name: str
    namespace: str
    uid: str
    generation: int | None = None

    @classmethod
    def from_body(cls, body: Any) -> Owner:
        meta = body["metadata"]
        generation = meta.get("generation")
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            uid=meta.get("uid") or "",
            generation=int(generation) if generation is not None else None,
        )

    def reference(self) -> dict[str, Any]:
        # blockOwnerDeletion makes a foreground deletion of the resource wait for its children.
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }


# --- the tenant-server configuration (docs/tenant-server-contract.md) ---------------


def _modality(entry: dict[str, Any]) -> dict[str, Any]:
    rendered: dict[str, Any] = {"AET": entry["aet"], "Host": entry["host"], "Port": entry["port"]}
    for op in OPERATIONS:
        if f"allow{op}" in entry:
            rendered[f"Allow{op}"] = entry[f"allow{op}"]
    return rendered


def _caller(entry: dict[str, Any]) -> str | dict[str, Any]:
    if "hosts" not in entry and "permissions" not in entry:
        return str(entry["aet"])
    rendered: dict[str, Any] = {"AET": entry["aet"]}
    if "hosts" in entry:
        rendered["Hosts"] = list(entry["hosts"])
    if "permissions" in entry:
        rendered["Permissions"] = list(entry["permissions"])
    return rendered


def render_server(server: dict[str, Any]) -> dict[str, Any]:
    """One ``MultitenantDicom.Servers`` entry: the plugin's keys, then this project's extensions."""
    entry: dict[str, Any] = {
        "AET": server["aet"],
        "Port": server["port"],
        "Labels": list(server.get("labels", [])),
        "LabelsConstraint": server.get("labelsConstraint", "All"),
        "LabelsStoreLevels": list(server.get("labelsStoreLevels", ["Study", "Series", "Instance"])),
        "StoreIsolation": server.get("storeIsolation", "Strict"),
    }
    if server.get("allowEmptyLabels"):
        entry["AllowEmptyLabels"] = True
    if "allowedCallers" in server:
        entry["AllowedCallers"] = [_caller(caller) for caller in server["allowedCallers"]]
    if "allowedMoveDestinations" in server:
        entry["AllowedMoveDestinations"] = list(server["allowedMoveDestinations"])
    if "maxAssociations" in server:
        entry["MaxAssociations"] = server["maxAssociations"]
    if "maxAssociationsPerCaller" in server:
        entry["MaxAssociationsPerCaller"] = server["maxAssociationsPerCaller"]
    tls = server.get("tls")
    if tls:
        entry["Tls"] = {
            "Certificate": f"{TLS_DIR}/tls.crt",
            "PrivateKey": f"{TLS_DIR}/tls.key",
        }
        if tls.get("requireClientCertificate"):
            entry["Tls"]["TrustedCertificates"] = f"{TLS_DIR}/ca.crt"
            entry["Tls"]["RequireClientCertificate"] = True
    return entry


def _defaults(spec: dict[str, Any], server: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Spec and server with the CRD defaults, whether or not the API server applied them."""
    return apply_defaults(spec), apply_defaults(server, server_schema())


def render_tenant_config(spec: dict[str, Any], server: dict[str, Any]) -> dict[str, Any]:
    """The tenant-server configuration of one server (no credentials: they come from env).

    Each server gets a file with only itself, so that changing one tenant rolls only that
    tenant's pods.
    """
    return _render_tenant_config(*_defaults(spec, server))


def _render_tenant_config(spec: dict[str, Any], server: dict[str, Any]) -> dict[str, Any]:
    dicom = spec["dicom"]
    config: dict[str, Any] = {"Orthanc": {"Url": spec["orthanc"]["url"]}}
    modalities = spec.get("modalities") or {}
    if modalities:
        config["DicomModalities"] = {name: _modality(entry) for name, entry in sorted(modalities.items())}
    config.update(
        {
            "DicomAlwaysAllowEcho": dicom["alwaysAllowEcho"],
            "DicomAlwaysAllowFind": dicom["alwaysAllowFind"],
            "DicomAlwaysAllowMove": dicom["alwaysAllowMove"],
            "DicomAlwaysAllowStore": dicom["alwaysAllowStore"],
            "DicomAlwaysAllowGet": dicom["alwaysAllowGet"],
            "StrictAetComparison": dicom["strictAetComparison"],
            "DicomCheckCalledAet": dicom["checkCalledAet"],
            "DicomCheckModalityHost": dicom["checkModalityHost"],
            "DicomScpTimeout": dicom["scpTimeout"],
            "MaximumPduLength": dicom["maximumPduLength"],
            "DefaultEncoding": dicom["defaultEncoding"],
            "CaseSensitivePN": dicom["caseSensitivePN"],
        }
    )
    if dicom.get("limitFindResults"):
        config["LimitFindResults"] = dicom["limitFindResults"]
    if dicom.get("limitFindInstances"):
        config["LimitFindInstances"] = dicom["limitFindInstances"]
    config["MultitenantDicom"] = {"Servers": [render_server(server)]}
    config["TenantServer"] = {
        "HealthPort": HEALTH_PORT,
        "BindAddress": "0.0.0.0",
        "ShutdownGracePeriod": shutdown_grace_period(spec["terminationGracePeriodSeconds"]),
        "AuditQueryValues": spec["auditQueryValues"],
    }
    return config


def shutdown_grace_period(termination_grace: int) -> int:
    """How long the server lets running operations finish on SIGTERM: the pod's grace period
    less a margin (5 s, or a third of a short period) to exit before the kubelet's SIGKILL."""
    return termination_grace - min(5, termination_grace // 3)


def config_json(spec: dict[str, Any], server: dict[str, Any]) -> str:
    """The ConfigMap's ``config.json``: stable text (sorted keys) so equal configs hash equal."""
    return _config_json(*_defaults(spec, server))


def _config_json(spec: dict[str, Any], server: dict[str, Any]) -> str:
    return json.dumps(_render_tenant_config(spec, server), indent=2, sort_keys=True) + "\n"


def config_hash(spec: dict[str, Any], server: dict[str, Any]) -> str:
    """What the pods must be restarted for: the config file and the Secrets it relies on.

    Secret *contents* are not hashed: reading them would need ``get secrets`` on every
    Secret of the namespace. A new Secret name rolls the pods; rotating a Secret's content
    in place needs ``kubectl rollout restart`` (docs/kubernetes.md).
    """
    return _config_hash(*_defaults(spec, server))


def _config_hash(spec: dict[str, Any], server: dict[str, Any]) -> str:
    secret = (spec["orthanc"].get("credentialsSecret") or {}).get("name", "")
    ca = (spec["orthanc"].get("caSecret") or {}).get("name", "")
    tls = (server.get("tls") or {}).get("secretName", "")
    # The CA Secret joins only when set: resources without one keep the hash (and pods)
    # they had before the field existed.
    text = "\0".join([_config_json(spec, server), secret, tls, *([ca] if ca else [])])
    return hashlib.sha256(text.encode()).hexdigest()


# --- the children -------------------------------------------------------------------


def _metadata(owner: Owner, spec: dict[str, Any], server: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": naming.child_name(owner.name, server["aet"]),
        "namespace": owner.namespace,
        "labels": naming.child_labels(owner.name, server["aet"], naming.image_version(spec["image"])),
        "annotations": {naming.ANNOTATION_AET: server["aet"]},
        "ownerReferences": [owner.reference()],
    }


def build_configmap(owner: Owner, spec: dict[str, Any], server: dict[str, Any]) -> Manifest:
    return _build_configmap(owner, *_defaults(spec, server))


def _build_configmap(owner: Owner, spec: dict[str, Any], server: dict[str, Any]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(owner, spec, server),
        "data": {CONFIG_KEY: _config_json(spec, server)},
    }


def _env(spec: dict[str, Any]) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": "ORTHANC_URL", "value": spec["orthanc"]["url"]}]
    secret = spec["orthanc"].get("credentialsSecret")
    if secret:
        for variable, key in (
            ("ORTHANC_USERNAME", secret["usernameKey"]),
            ("ORTHANC_PASSWORD", secret["passwordKey"]),
        ):
            env.append(
                {"name": variable, "valueFrom": {"secretKeyRef": {"name": secret["name"], "key": key}}}
            )
    if spec["orthanc"].get("caSecret"):
        env.append({"name": "SSL_CERT_FILE", "value": ORTHANC_CA_PATH})
    env.append({"name": "PYTHONUNBUFFERED", "value": "1"})
    return env


def _config_volume(name: str, spec: dict[str, Any], server: dict[str, Any]) -> dict[str, Any]:
    """One projected volume for config.json, the TLS files and Orthanc's CA bundle.

    A Secret mounted *inside* a read-only ConfigMap mount fails on several runtimes (the
    mount point cannot be created), so both go through one projected volume instead.
    """
    sources: list[dict[str, Any]] = [
        {"configMap": {"name": name, "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}]}}
    ]
    tls = server.get("tls")
    if tls:
        items = [{"key": "tls.crt", "path": "tls/tls.crt"}, {"key": "tls.key", "path": "tls/tls.key"}]
        if tls.get("requireClientCertificate"):
            items.append({"key": "ca.crt", "path": "tls/ca.crt"})
        sources.append({"secret": {"name": tls["secretName"], "items": items}})
    ca = spec["orthanc"].get("caSecret")
    if ca:
        path = ORTHANC_CA_PATH.removeprefix(CONFIG_DIR + "/")
        sources.append({"secret": {"name": ca["name"], "items": [{"key": ca["key"], "path": path}]}})
    return {"name": "config", "projected": {"sources": sources, "defaultMode": 0o440}}


def _security_context(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    pod = dict(spec["podSecurityContext"])
    pod["seccompProfile"] = dict(pod["seccompProfile"])
    container = dict(spec["containerSecurityContext"])
    capabilities = {key: list(value) for key, value in container.get("capabilities", {}).items()}
    container["capabilities"] = capabilities
    return pod, container


def build_deployment(owner: Owner, spec: dict[str, Any], server: dict[str, Any]) -> Manifest:
    return _build_deployment(owner, *_defaults(spec, server))


def _build_deployment(owner: Owner, spec: dict[str, Any], server: dict[str, Any]) -> Manifest:
    metadata = _metadata(owner, spec, server)
    name = metadata["name"]
    pod_security, container_security = _security_context(spec)
    selector = naming.selector_labels(owner.name, server["aet"])
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec["image"],
        "imagePullPolicy": spec["imagePullPolicy"],
        "command": list(COMMAND),
        "args": ["--config", CONFIG_PATH, "--server", server["aet"]],
        "env": _env(spec),
        "ports": [
            {"name": "dicom", "containerPort": server["port"], "protocol": "TCP"},
            {"name": "http", "containerPort": HEALTH_PORT, "protocol": "TCP"},
        ],
        "startupProbe": {
            "httpGet": {"path": "/livez", "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 30,
        },
        "livenessProbe": {
            "httpGet": {"path": "/livez", "port": "http"},
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 2,
        },
        "resources": server["resources"],
        "securityContext": container_security,
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    pod_spec: dict[str, Any] = {
        # The tenant server never calls the Kubernetes API: no token in its pods.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": spec["terminationGracePeriodSeconds"],
        "securityContext": pod_security,
        "containers": [container],
        "volumes": [
            _config_volume(name, spec, server),
            {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}},
        ],
    }
    if spec.get("imagePullSecrets"):
        pod_spec["imagePullSecrets"] = [{"name": ref["name"]} for ref in spec["imagePullSecrets"]]
    if spec.get("nodeSelector"):
        pod_spec["nodeSelector"] = dict(spec["nodeSelector"])
    if spec.get("tolerations"):
        pod_spec["tolerations"] = [dict(toleration) for toleration in spec["tolerations"]]
    if spec.get("priorityClassName"):
        pod_spec["priorityClassName"] = spec["priorityClassName"]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": server["replicas"],
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector},
            # Never fewer ready pods than asked: a surge pod binds its own port in its own netns.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {
                    "labels": dict(metadata["labels"]),
                    "annotations": {
                        naming.ANNOTATION_AET: server["aet"],
                        naming.ANNOTATION_CONFIG_HASH: _config_hash(spec, server),
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(HEALTH_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def build_service(owner: Owner, spec: dict[str, Any], server: dict[str, Any]) -> Manifest:
    return _build_service(owner, *_defaults(spec, server))


def _build_service(owner: Owner, spec: dict[str, Any], server: dict[str, Any]) -> Manifest:
    metadata = _metadata(owner, spec, server)
    service = server["service"]
    metadata["annotations"] = {**service.get("annotations", {}), **metadata["annotations"]}
    port: dict[str, Any] = {"name": "dicom", "port": server["port"], "targetPort": "dicom", "protocol": "TCP"}
    if "nodePort" in service:
        port["nodePort"] = service["nodePort"]
    service_spec: dict[str, Any] = {
        "type": service["type"],
        "selector": naming.selector_labels(owner.name, server["aet"]),
        "ports": [port],
    }
    for key in ("loadBalancerSourceRanges", "loadBalancerClass", "externalTrafficPolicy"):
        if key in service:
            value = service[key]
            service_spec[key] = list(value) if isinstance(value, list) else value
    return {"apiVersion": "v1", "kind": "Service", "metadata": metadata, "spec": service_spec}


def build_children(owner: Owner, spec: dict[str, Any]) -> list[Manifest]:
    """All children of a resource, in creation order (ConfigMap before the pods that mount it)."""
    spec = apply_defaults(spec)
    children: list[Manifest] = []
    for server in spec["servers"]:
        children.append(_build_configmap(owner, spec, server))
        children.append(_build_deployment(owner, spec, server))
        children.append(_build_service(owner, spec, server))
    return children


def desired_servers(owner: Owner, spec: dict[str, Any]) -> list[DesiredServer]:
    """What the status compares the live children with: names, replicas and config hashes."""
    spec = apply_defaults(spec)
    return [
        DesiredServer(
            aet=server["aet"],
            port=server["port"],
            name=naming.child_name(owner.name, server["aet"]),
            replicas=server["replicas"],
            config_hash=_config_hash(spec, server),
            namespace=owner.namespace,
        )
        for server in spec["servers"]
    ]
