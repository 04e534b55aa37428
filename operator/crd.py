"""The MultitenantDicomServer CustomResourceDefinition, authored once in Python.

The schema lives here rather than only in ``crds/*.yaml`` because the operator needs it at
run time: the API server applies the schema's defaults and validations, but an API server
without CEL (< 1.25), a ``kubectl apply --validate=false`` or the test emulator (which has
no schema at all) would hand the operator an unchecked spec. The operator therefore applies
the same defaults (:func:`apply_defaults`) and the same checks (:func:`validate_spec`) itself.
``crds/mtdicom.io_multitenantdicomservers.yaml`` is generated from :func:`build_crd`
(``python -m mtdicom_operator.crd > crds/mtdicom.io_multitenantdicomservers.yaml``) and a
test keeps the two identical.
"""

from __future__ import annotations

import copy
import functools
import ipaddress
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

GROUP: Final = "mtdicom.io"
VERSION: Final = "v1alpha1"
KIND: Final = "MultitenantDicomServer"
PLURAL: Final = "multitenantdicomservers"
SINGULAR: Final = "multitenantdicomserver"
SHORT_NAMES: Final = ["mtds"]
API_VERSION: Final = f"{GROUP}/{VERSION}"
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

DEFAULT_IMAGE: Final = "ghcr.io/mtdicom/multitenant-dicom:0.1.0"
MAX_SERVERS: Final = 256

# Printable ASCII without backslash, no leading/trailing space (DICOM PS3.5 AE VR; the
# tenant server strips spaces, so " A" and "A" would collide).
AET_PATTERN: Final = r"^[\x21-\x5b\x5d-\x7e]([\x20-\x5b\x5d-\x7e]{0,14}[\x21-\x5b\x5d-\x7e])?$"
# The tenant server's label syntax (Orthanc accepts these as label names).
LABEL_PATTERN: Final = r"^[A-Za-z0-9_-]{1,64}$"
DNS_SUBDOMAIN_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS_LABEL_PATTERN: Final = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SECRET_KEY_PATTERN: Final = r"^[-._a-zA-Z0-9]+$"
URL_PATTERN: Final = r"^https?://[^\s/$.?#][^\s]*$"
QUANTITY_PATTERN: Final = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
LEVELS: Final = ["Patient", "Study", "Series", "Instance"]
OPERATIONS: Final = ["Echo", "Find", "Move", "Get", "Store"]
ENCODINGS: Final = [
    "Ascii",
    "Utf8",
    "Latin1",
    "Latin2",
    "Latin3",
    "Latin4",
    "Latin5",
    "Cyrillic",
    "Windows1251",
    "Arabic",
    "Greek",
    "Hebrew",
    "Thai",
    "Japanese",
    "Chinese",
    "JapaneseKanji",
    "Korean",
    "SimplifiedChinese",
]


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _boolean(description: str, default: bool | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "boolean", "description": description}
    if default is not None:
        schema["default"] = default
    return schema


def _integer(description: str, minimum: int, maximum: int, default: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "integer",
        "description": description,
        "minimum": minimum,
        "maximum": maximum,
    }
    if default is not None:
        schema["default"] = default
    return schema


def _object(description: str, properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "description": description, "properties": properties, **extra}


def _secret_reference(description: str, **keys: tuple[str, str]) -> dict[str, Any]:
    """A Secret by name and the keys read from it (each a description and a default)."""
    fields = {
        field: _string(text, pattern=SECRET_KEY_PATTERN, default=default)
        for field, (text, default) in keys.items()
    }
    name = _string("Secret name.", maxLength=253, pattern=DNS_SUBDOMAIN_PATTERN)
    return _object(description, {"name": name, **fields}, required=["name"])


def _aet(description: str) -> dict[str, Any]:
    return _string(description, minLength=1, maxLength=16, pattern=AET_PATTERN)


def _quantity_map(description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "additionalProperties": {
            "x-kubernetes-int-or-string": True,
            "anyOf": [{"type": "integer"}, {"type": "string", "pattern": QUANTITY_PATTERN}],
        },
    }


def _modality_schema() -> dict[str, Any]:
    allow = {
        f"allow{op}": _boolean(f"May this peer ask for C-{op.upper()}? Orthanc's default: true.")
        for op in OPERATIONS
    }
    return _object(
        "One DicomModalities entry: a peer that may call the tenant servers or receive C-MOVEs.",
        {
            "aet": _aet("The peer's AE title."),
            "host": _string("Host name or IP address of the peer.", minLength=1, maxLength=253),
            "port": _integer("The peer's DICOM port.", 1, 65535),
            **allow,
        },
        required=["aet", "host", "port"],
    )


def _dicom_schema() -> dict[str, Any]:
    return _object(
        "Orthanc's global DICOM options, shared by every tenant server of this resource "
        "(the same keys as in orthanc.json, camelCased and without the Dicom prefix).",
        {
            "alwaysAllowEcho": _boolean("DicomAlwaysAllowEcho: accept C-ECHO from any AET.", True),
            "alwaysAllowFind": _boolean("DicomAlwaysAllowFind: accept C-FIND from any AET.", False),
            "alwaysAllowMove": _boolean("DicomAlwaysAllowMove: accept C-MOVE from any AET.", False),
            "alwaysAllowGet": _boolean("DicomAlwaysAllowGet: accept C-GET from any AET.", False),
            "alwaysAllowStore": _boolean("DicomAlwaysAllowStore: accept C-STORE from any AET.", True),
            "strictAetComparison": _boolean("StrictAetComparison: compare AETs case-sensitively.", False),
            "checkCalledAet": _boolean("DicomCheckCalledAet: refuse associations to another AET.", False),
            "checkModalityHost": _boolean(
                "DicomCheckModalityHost: a known modality must call from its configured host.", False
            ),
            "scpTimeout": _integer("DicomScpTimeout in seconds.", 1, 86400, 30),
            "maximumPduLength": _integer("MaximumPduLength in bytes.", 4096, 131072, 16384),
            "defaultEncoding": _string(
                "DefaultEncoding of answers without SpecificCharacterSet.", enum=ENCODINGS, default="Utf8"
            ),
            "caseSensitivePN": _boolean("CaseSensitivePN: match person names case-sensitively.", False),
            "limitFindResults": _integer("LimitFindResults (0: no limit).", 0, 2**31 - 1, 0),
            "limitFindInstances": _integer("LimitFindInstances (0: no limit).", 0, 2**31 - 1, 0),
        },
        default={},
    )


def _caller_schema() -> dict[str, Any]:
    return _object(
        "A calling AE allowed to associate with this server, optionally pinned to hosts and operations.",
        {
            "aet": _aet("The calling AE title."),
            "hosts": {
                "type": "array",
                "description": "IP addresses or host names the caller must come from (empty: any).",
                "maxItems": 64,
                "items": _string("A host name or IP address.", minLength=1, maxLength=253),
                "x-kubernetes-list-type": "set",
            },
            "permissions": {
                "type": "array",
                "description": "Operations this caller may request (absent: all of them).",
                "items": _string("A DIMSE operation.", enum=OPERATIONS),
                "x-kubernetes-list-type": "set",
            },
        },
        required=["aet"],
    )


def _service_schema() -> dict[str, Any]:
    return _object(
        "How the server's DICOM port is exposed: a Service of this type.",
        {
            "type": _string(
                "Service type.", enum=["ClusterIP", "NodePort", "LoadBalancer"], default="ClusterIP"
            ),
            "nodePort": _integer(
                "Fixed node port (NodePort or LoadBalancer only; absent: allocated by Kubernetes).",
                30000,
                32767,
            ),
            "annotations": {
                "type": "object",
                "description": "Annotations of the Service, e.g. for a cloud load balancer.",
                "additionalProperties": {"type": "string"},
            },
            "loadBalancerSourceRanges": {
                "type": "array",
                "description": "CIDRs allowed to reach a LoadBalancer (LoadBalancer only).",
                "maxItems": 64,
                "items": _string("An IPv4 or IPv6 CIDR.", maxLength=43),
                "x-kubernetes-list-type": "set",
            },
            "loadBalancerClass": _string("Load balancer implementation (LoadBalancer only).", maxLength=253),
            "externalTrafficPolicy": _string(
                "Cluster or Local (NodePort and LoadBalancer only); Local keeps the caller's IP, "
                "which allowedCallers[].hosts and checkModalityHost need.",
                enum=["Cluster", "Local"],
            ),
        },
        default={},
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.nodePort) || self.type != 'ClusterIP'",
                    "message": "nodePort needs type NodePort or LoadBalancer",
                },
                {
                    "rule": "(!has(self.loadBalancerSourceRanges) && !has(self.loadBalancerClass)) "
                    "|| self.type == 'LoadBalancer'",
                    "message": "loadBalancerSourceRanges and loadBalancerClass need type LoadBalancer",
                },
                {
                    "rule": "!has(self.externalTrafficPolicy) || self.type != 'ClusterIP'",
                    "message": "externalTrafficPolicy needs type NodePort or LoadBalancer",
                },
            ]
        },
    )


def _server_schema() -> dict[str, Any]:
    return _object(
        "One tenant DICOM server: an AE title on a port that sees only the resources carrying its labels.",
        {
            "aet": _aet("AET: the server's AE title (1-16 printable ASCII characters, no backslash)."),
            "port": _integer("Port: the DICOM TCP port of the server (and of its Service).", 1, 65535),
            "labels": {
                "type": "array",
                "description": "Labels: the Orthanc labels that define the tenant.",
                "maxItems": 64,
                "items": _string("An Orthanc label.", pattern=LABEL_PATTERN, maxLength=64),
                "x-kubernetes-list-type": "set",
            },
            "labelsConstraint": _string(
                "LabelsConstraint: how C-FIND/C-MOVE/C-GET match the labels.",
                enum=["All", "Any", "None"],
                default="All",
            ),
            "labelsStoreLevels": {
                "type": "array",
                "description": "LabelsStoreLevels: levels labelled on C-STORE.",
                "items": _string("A level.", enum=LEVELS),
                "x-kubernetes-list-type": "set",
                "default": ["Study", "Series", "Instance"],
            },
            "allowEmptyLabels": _boolean(
                "AllowEmptyLabels: permit an empty labels list, which shows the whole archive.", False
            ),
            "allowedCallers": {
                "type": "array",
                "description": "AllowedCallers: who may associate with this server (absent: the global rules).",
                "maxItems": 256,
                "items": _caller_schema(),
            },
            "allowedMoveDestinations": {
                "type": "array",
                "description": "AllowedMoveDestinations: names of spec.modalities this server may C-MOVE to "
                "(absent: any modality).",
                "maxItems": 256,
                "items": _string("A key of spec.modalities.", minLength=1, maxLength=64),
                "x-kubernetes-list-type": "set",
            },
            "storeIsolation": _string(
                "StoreIsolation: Strict refuses a C-STORE into a study owned by another tenant.",
                enum=["Strict", "Off"],
                default="Strict",
            ),
            "maxAssociations": _integer(
                "MaxAssociations: concurrent associations (tenant default 64).", 1, 10000
            ),
            "maxAssociationsPerCaller": _integer(
                "MaxAssociationsPerCaller: concurrent associations per calling AET (absent: no limit).",
                1,
                10000,
            ),
            "tls": _object(
                "DICOM TLS for this server from a kubernetes.io/tls Secret (tls.crt, tls.key, and "
                "ca.crt when client certificates are required).",
                {
                    "secretName": _string("The Secret's name.", maxLength=253, pattern=DNS_SUBDOMAIN_PATTERN),
                    "requireClientCertificate": _boolean(
                        "Require and verify a client certificate against ca.crt.", False
                    ),
                },
                required=["secretName"],
            ),
            "service": _service_schema(),
            "replicas": _integer("Pods serving this AET.", 0, 100, 1),
            "resources": _object(
                "Compute resources of the tenant-server container.",
                {
                    "requests": _quantity_map("Requested resources."),
                    "limits": _quantity_map("Resource limits."),
                },
                default={"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
            ),
        },
        required=["aet", "port"],
        **{
            "x-kubernetes-validations": [
                {
                    "rule": "(has(self.labels) && size(self.labels) > 0) || self.allowEmptyLabels",
                    "message": "labels must not be empty unless allowEmptyLabels is true "
                    "(an empty list shows the whole archive)",
                },
            ]
        },
    )


def _security_schemas() -> tuple[dict[str, Any], dict[str, Any]]:
    pod = _object(
        "Pod security context of the tenant pods; the defaults satisfy the 'restricted' Pod Security Standard.",
        {
            "runAsNonRoot": _boolean("Refuse to start a container as root.", True),
            "runAsUser": _integer("UID of the processes (the image's user).", 1, 2**31 - 1, 10001),
            "runAsGroup": _integer("GID of the processes.", 1, 2**31 - 1, 10001),
            "fsGroup": _integer(
                "Group owning mounted volumes (lets the user read the TLS key).", 1, 2**31 - 1, 10001
            ),
            "seccompProfile": _object(
                "Seccomp profile.",
                {
                    "type": _string(
                        "Profile type.",
                        enum=["RuntimeDefault", "Localhost", "Unconfined"],
                        default="RuntimeDefault",
                    ),
                    "localhostProfile": _string("Profile file for type Localhost.", maxLength=253),
                },
                default={},
            ),
        },
        default={},
    )
    container = _object(
        "Container security context of the tenant-server container (restricted defaults).",
        {
            "allowPrivilegeEscalation": _boolean("Allow setuid escalation.", False),
            "readOnlyRootFilesystem": _boolean(
                "Mount the image read-only (the server writes only /tmp).", True
            ),
            "privileged": _boolean("Privileged container.", False),
            "capabilities": _object(
                "Linux capabilities.",
                {
                    "drop": {
                        "type": "array",
                        "description": "Capabilities to drop.",
                        "items": _string("A capability.", maxLength=64),
                        "default": ["ALL"],
                    },
                    "add": {
                        "type": "array",
                        "description": "Capabilities to add (none is needed: ports above 1023 need none, "
                        "and ports below are bound with net.ipv4.ip_unprivileged_port_start on most runtimes).",
                        "items": _string("A capability.", maxLength=64),
                    },
                },
                default={},
            ),
        },
        default={},
    )
    return pod, container


@functools.cache
def server_schema() -> dict[str, Any]:
    """The schema of one ``spec.servers[]`` entry (shared: never mutate it)."""
    return _server_schema()


@functools.cache
def spec_schema() -> dict[str, Any]:
    """The structural schema of ``spec`` (shared: never mutate it)."""
    pod_security, container_security = _security_schemas()
    return _object(
        "Tenant DICOM servers in front of one Orthanc, in the shape of Orthanc's configuration.",
        {
            "image": _string("Container image of the tenant servers.", minLength=1, default=DEFAULT_IMAGE),
            "imagePullPolicy": _string(
                "Image pull policy.", enum=["Always", "IfNotPresent", "Never"], default="IfNotPresent"
            ),
            "imagePullSecrets": {
                "type": "array",
                "description": "Secrets to pull the image with.",
                "items": _object(
                    "A Secret reference.",
                    {"name": _string("Secret name.", maxLength=253, pattern=DNS_SUBDOMAIN_PATTERN)},
                    required=["name"],
                ),
            },
            "orthanc": _object(
                "The Orthanc whose REST API the tenant servers use.",
                {
                    "url": _string(
                        "Orthanc's REST API URL, e.g. http://orthanc.pacs.svc:8042.",
                        maxLength=2048,
                        pattern=URL_PATTERN,
                    ),
                    "credentialsSecret": _secret_reference(
                        "Secret holding Orthanc's username and password. They reach the pods as environment "
                        "variables (ORTHANC_USERNAME/ORTHANC_PASSWORD) and are never copied into a ConfigMap "
                        "or the status.",
                        usernameKey=("Key of the username.", "username"),
                        passwordKey=("Key of the password.", "password"),
                    ),
                    "caSecret": _secret_reference(
                        "Secret holding the CA bundle (PEM) that signed an https Orthanc's certificate, "
                        "when that is a private CA. It is mounted into the pods and named by SSL_CERT_FILE, "
                        "so the tenant servers trust it instead of the system CA store for Orthanc (DICOM "
                        "TLS client certificates are checked against servers[].tls alone).",
                        key=("Key of the PEM bundle.", "ca.crt"),
                    ),
                },
                required=["url"],
            ),
            "modalities": {
                "type": "object",
                "description": "DicomModalities: symbolic name -> known DICOM peer.",
                "maxProperties": 1024,
                "additionalProperties": _modality_schema(),
            },
            "dicom": _dicom_schema(),
            "servers": {
                "type": "array",
                "description": "The tenant DICOM servers (MultitenantDicom.Servers).",
                "minItems": 1,
                "maxItems": MAX_SERVERS,
                "items": server_schema(),
                "x-kubernetes-list-type": "atomic",
            },
            "podSecurityContext": pod_security,
            "containerSecurityContext": container_security,
            "terminationGracePeriodSeconds": _integer(
                "Time a stopping pod gets; running associations may finish within it, less a few seconds "
                "kept for exiting (TenantServer.ShutdownGracePeriod).",
                1,
                3600,
                30,
            ),
            "auditQueryValues": _boolean(
                "Write query values and PatientIDs (PHI) in the audit log (TenantServer.AuditQueryValues). "
                "Off: the log carries UIDs, AE titles, addresses, counts and statuses only.",
                False,
            ),
            "nodeSelector": {
                "type": "object",
                "description": "Node selector of the tenant pods.",
                "additionalProperties": {"type": "string"},
            },
            "tolerations": {
                "type": "array",
                "description": "Tolerations of the tenant pods (core/v1 Toleration objects).",
                "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            },
            "priorityClassName": _string("PriorityClass of the tenant pods.", maxLength=253),
        },
        required=["orthanc", "servers"],
        **{"x-kubernetes-validations": SPEC_CEL_RULES},
    )


SPEC_CEL_RULES: Final[list[dict[str, str]]] = [
    {
        "rule": "self.servers.all(s, self.servers.exists_one(t, t.aet.upperAscii() == s.aet.upperAscii()))",
        "message": "servers[].aet must be unique (compared case-insensitively, as Orthanc does)",
        "fieldPath": ".servers",
        "reason": "FieldValueDuplicate",
    },
    {
        "rule": "self.servers.all(s, self.servers.exists_one(t, t.port == s.port))",
        "message": "servers[].port must be unique",
        "fieldPath": ".servers",
        "reason": "FieldValueDuplicate",
    },
    {
        "rule": "self.servers.filter(s, has(s.service) && has(s.service.nodePort)).all(s, "
        "self.servers.filter(t, has(t.service) && has(t.service.nodePort))"
        ".filter(t, t.service.nodePort == s.service.nodePort).size() == 1)",
        "message": "servers[].service.nodePort must be unique",
        "fieldPath": ".servers",
        "reason": "FieldValueDuplicate",
    },
    {
        "rule": "self.servers.all(s, !has(s.allowedMoveDestinations) || "
        "s.allowedMoveDestinations.all(d, has(self.modalities) && d in self.modalities))",
        "message": "servers[].allowedMoveDestinations must name entries of spec.modalities",
        "fieldPath": ".servers",
        "reason": "FieldValueInvalid",
    },
]


def _condition_schema() -> dict[str, Any]:
    return _object(
        "A metav1.Condition.",
        {
            "type": _string("Ready, Progressing or Degraded.", maxLength=316),
            "status": _string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
            "lastTransitionTime": _string("When the status last changed.", format="date-time"),
            "reason": _string("CamelCase reason.", maxLength=1024),
            "message": _string("Human-readable details.", maxLength=32768),
        },
        required=["type", "status", "lastTransitionTime", "reason", "message"],
    )


def status_schema() -> dict[str, Any]:
    return _object(
        "Observed state, written by the operator.",
        {
            "observedGeneration": {
                "type": "integer",
                "format": "int64",
                "description": "The metadata.generation the children were last reconciled from.",
            },
            "conditions": {
                "type": "array",
                "description": "Ready, Progressing and Degraded (read by Argo CD, Flux/kstatus and kubectl wait).",
                "items": _condition_schema(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "readyServers": _string("Ready servers out of all, e.g. 2/3."),
            "servers": {
                "type": "array",
                "description": "Per-server state.",
                "items": _object(
                    "One server's state.",
                    {
                        "aet": _string("AE title."),
                        "port": {"type": "integer"},
                        "ready": {"type": "boolean"},
                        "replicas": {"type": "integer"},
                        "readyReplicas": {"type": "integer"},
                        "serviceType": _string("Service type."),
                        "endpoint": _string("Where DICOM peers reach the server (host:port)."),
                        "message": _string("Why it is not ready."),
                        "deployment": _string("Name of the Deployment, ConfigMap and Service."),
                    },
                ),
            },
        },
    )


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition object, ready to ``kubectl apply``."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {
                "app.kubernetes.io/name": "multitenant-dicom",
                "app.kubernetes.io/part-of": "multitenant-dicom",
            },
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": ["dicom"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": "Servers",
                            "type": "string",
                            "description": "Ready servers out of all",
                            "jsonPath": ".status.readyServers",
                        },
                        {
                            "name": "Ready",
                            "type": "string",
                            "description": "The Ready condition",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                        },
                        {
                            "name": "Reason",
                            "type": "string",
                            "priority": 1,
                            "description": "Why (not) ready",
                            "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
                        },
                        {
                            "name": "Age",
                            "type": "date",
                            "jsonPath": ".metadata.creationTimestamp",
                        },
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "Multitenant DICOM endpoints in front of one Orthanc PACS.",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": copy.deepcopy(spec_schema()),
                                "status": status_schema(),
                            },
                            "required": ["spec"],
                        }
                    },
                }
            ],
        },
    }


# --- defaults and validation the operator applies itself -----------------------------


def apply_defaults(value: Any, schema: dict[str, Any] | None = None) -> Any:
    """A copy of ``value`` with the schema's defaults filled in, as the API server would.

    Defaults are applied to absent properties only, then recursively inside them, which is
    the structural-schema defaulting algorithm (defaults of nested fields of a defaulted
    object apply too).
    """
    schema = spec_schema() if schema is None else schema
    return _default(copy.deepcopy(value), schema)


def _default(value: Any, schema: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for key, sub in properties.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = _default(value[key], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                if key not in properties:
                    value[key] = _default(value[key], extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_default(item, schema["items"]) for item in value]
    return value


@dataclass(frozen=True)
class SpecError:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


_TYPES: Final[dict[str, Callable[[Any], bool]]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}


def schema_errors(value: Any, schema: dict[str, Any], path: str = "spec") -> Iterator[SpecError]:
    """Check ``value`` against the subset of OpenAPI v3 this CRD uses (not the CEL rules)."""
    if schema.get("x-kubernetes-int-or-string"):
        if not (_TYPES["integer"](value) or isinstance(value, str)):
            yield SpecError(path, f"must be an integer or a string, got {value!r}")
            return
        for option in schema.get("anyOf", []):
            if _TYPES[option["type"]](value):
                yield from schema_errors(value, option, path)
        return
    kind = schema.get("type")
    if kind and not _TYPES[kind](value):
        yield SpecError(path, f"must be of type {kind}, got {value!r}")
        return
    if "enum" in schema and value not in schema["enum"]:
        yield SpecError(path, f"must be one of {schema['enum']}, got {value!r}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            yield SpecError(path, f"must have at least {schema['minLength']} characters")
        if len(value) > schema.get("maxLength", sys.maxsize):
            yield SpecError(path, f"must have at most {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            yield SpecError(path, f"{value!r} does not match {schema['pattern']}")
    if isinstance(value, int) and not isinstance(value, bool):
        if value < schema.get("minimum", -sys.maxsize):
            yield SpecError(path, f"must be >= {schema['minimum']}, got {value}")
        if value > schema.get("maximum", sys.maxsize):
            yield SpecError(path, f"must be <= {schema['maximum']}, got {value}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            yield SpecError(path, f"must have at least {schema['minItems']} items")
        if len(value) > schema.get("maxItems", sys.maxsize):
            yield SpecError(path, f"must have at most {schema['maxItems']} items")
        if schema.get("x-kubernetes-list-type") == "set":
            seen: list[Any] = []
            for item in value:
                if item in seen:
                    yield SpecError(path, f"duplicate entry {item!r}")
                seen.append(item)
        for index, item in enumerate(value):
            yield from schema_errors(item, schema.get("items", {}), f"{path}[{index}]")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                yield SpecError(f"{path}.{key}", "is required")
        if len(value) > schema.get("maxProperties", sys.maxsize):
            yield SpecError(path, f"must have at most {schema['maxProperties']} entries")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            if key in properties:
                yield from schema_errors(item, properties[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                yield from schema_errors(item, extra, f"{path}.{key}")
            elif not schema.get("x-kubernetes-preserve-unknown-fields") and properties:
                # The API server would prune it silently; refusing makes a typo visible.
                yield SpecError(f"{path}.{key}", "is not a known field")


def cross_field_errors(spec: dict[str, Any]) -> Iterator[SpecError]:
    """The CRD's x-kubernetes-validations (CEL) rules, restated in Python, same order."""
    servers = spec.get("servers") or []
    modalities = spec.get("modalities") or {}
    seen_aets: dict[str, int] = {}
    seen_ports: dict[int, int] = {}
    seen_node_ports: dict[int, int] = {}
    for index, server in enumerate(servers):
        path = f"spec.servers[{index}]"
        aet = str(server.get("aet", "")).upper()
        if aet in seen_aets:
            yield SpecError(
                f"{path}.aet", f"{server.get('aet')!r} is already used by servers[{seen_aets[aet]}]"
            )
        seen_aets.setdefault(aet, index)
        port = server.get("port")
        if isinstance(port, int):
            if port in seen_ports:
                yield SpecError(f"{path}.port", f"{port} is already used by servers[{seen_ports[port]}]")
            seen_ports.setdefault(port, index)
        service = server.get("service") or {}
        node_port = service.get("nodePort")
        kind = service.get("type", "ClusterIP")
        if isinstance(node_port, int):
            if node_port in seen_node_ports:
                yield SpecError(
                    f"{path}.service.nodePort",
                    f"{node_port} is already used by servers[{seen_node_ports[node_port]}]",
                )
            seen_node_ports.setdefault(node_port, index)
            if kind == "ClusterIP":
                yield SpecError(f"{path}.service.nodePort", "nodePort needs type NodePort or LoadBalancer")
        if kind != "LoadBalancer" and (
            "loadBalancerSourceRanges" in service or "loadBalancerClass" in service
        ):
            yield SpecError(
                f"{path}.service", "loadBalancerSourceRanges and loadBalancerClass need type LoadBalancer"
            )
        if kind == "ClusterIP" and "externalTrafficPolicy" in service:
            yield SpecError(f"{path}.service", "externalTrafficPolicy needs type NodePort or LoadBalancer")
        for cidr in service.get("loadBalancerSourceRanges") or []:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                yield SpecError(f"{path}.service.loadBalancerSourceRanges", f"{cidr!r} is not a CIDR")
        if not server.get("labels") and not server.get("allowEmptyLabels", False):
            yield SpecError(
                f"{path}.labels",
                "labels must not be empty unless allowEmptyLabels is true (an empty list shows the whole archive)",
            )
        for name in server.get("allowedMoveDestinations") or []:
            if name not in modalities:
                yield SpecError(
                    f"{path}.allowedMoveDestinations", f"{name!r} is not a key of spec.modalities"
                )


def validate_spec(spec: Any) -> list[SpecError]:
    """Every reason the API server (schema + CEL) would have refused this spec."""
    errors = list(schema_errors(spec, spec_schema()))
    if not errors:
        errors.extend(cross_field_errors(spec))
    return errors


def main() -> None:
    import yaml

    header = "# Generated by `python -m mtdicom_operator.crd` from operator/crd.py; do not edit by hand.\n"
    sys.stdout.write(header + yaml.safe_dump(build_crd(), sort_keys=False, width=100))


if __name__ == "__main__":
    main()
