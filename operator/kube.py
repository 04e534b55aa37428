"""The operator's own Kubernetes calls (children and status), as plain dicts.

kopf talks to the API for the custom resources; the children go through the official
``kubernetes`` client's transport (authentication, in-cluster token refresh, TLS) but not
its typed models: dicts in, dicts out, explicit merge-patch content type. The verbs used
here are exactly those in :mod:`mtdicom_operator.rbac`: list, create, patch, delete (no get,
no update, no server-side apply).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any, Final

import kubernetes
from mtdicom_operator.crd import GROUP, PLURAL, VERSION

logger = logging.getLogger(__name__)

MERGE_PATCH: Final = "application/merge-patch+json"


@dataclass(frozen=True)
class Kind:
    """Where a resource lives in the API."""

    api_version: str
    plural: str
    kind: str

    def collection(self, namespace: str) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        return f"{prefix}/namespaces/{namespace}/{self.plural}"

    def item(self, namespace: str, name: str) -> str:
        return f"{self.collection(namespace)}/{name}"


CONFIGMAPS: Final = Kind("v1", "configmaps", "ConfigMap")
SERVICES: Final = Kind("v1", "services", "Service")
DEPLOYMENTS: Final = Kind("apps/v1", "deployments", "Deployment")
CUSTOM: Final = Kind(f"{GROUP}/{VERSION}", PLURAL, "MultitenantDicomServer")
CHILD_KINDS: Final = {kind.kind: kind for kind in (CONFIGMAPS, DEPLOYMENTS, SERVICES)}


class KubeError(Exception):
    """A failed API call, with the HTTP status (0 when the server was not reached)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


def load_configuration() -> kubernetes.client.Configuration:
    """In-cluster service account first, then kubeconfig, as ``kubectl`` and kopf do.

    ``$KUBECONFIG`` is read now, not when the ``kubernetes`` package was imported (its
    default path is frozen at import). The operator's kopf login uses this same function,
    so kopf and these calls always reach the same API server with the same identity.
    """
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        kubernetes.config.load_kube_config(config_file=path, client_configuration=configuration)
    return configuration


def connection_info(configuration: kubernetes.client.Configuration) -> dict[str, Any]:
    """kopf.ConnectionInfo arguments for the same credentials (token, basic or client cert)."""
    header = configuration.get_api_key_with_prefix("BearerToken") or configuration.get_api_key_with_prefix(
        "authorization"
    )
    parts = header.split(" ", 1) if header else []
    scheme, token = (
        (None, None) if not parts else (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    )
    return {
        "server": configuration.host,
        "ca_path": configuration.ssl_ca_cert,
        "insecure": not configuration.verify_ssl,
        "username": configuration.username or None,
        "password": configuration.password or None,
        "scheme": scheme,
        "token": token,
        "certificate_path": configuration.cert_file,
        "private_key_path": configuration.key_file,
    }


class Kube:
    """Synchronous, thread-safe (urllib3 pool) calls; kopf runs our sync handlers in threads."""

    def __init__(self, configuration: kubernetes.client.Configuration, timeout: float = 30.0) -> None:
        configuration.connection_pool_maxsize = max(configuration.connection_pool_maxsize or 0, 32)
        self.api = kubernetes.client.ApiClient(configuration)
        self.api.user_agent = "mtdicom-operator"
        self.timeout = timeout

    def close(self) -> None:
        self.api.close()

    def _call(
        self,
        method: str,
        path: str,
        *,
        query: list[tuple[str, str]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        request = self.api.param_serialize(
            method,
            path,
            query_params=query or None,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self.api.call_api(*request, _request_timeout=self.timeout)
            data = response.read()
        except Exception as exc:  # urllib3/socket errors: the API server was not reached
            raise KubeError(0, type(exc).__name__, str(exc)) from exc
        status = response.status
        if not 200 <= status < 300:
            reason, message = str(response.reason), ""
            try:
                payload = json.loads(data)
                reason = payload.get("reason") or reason
                message = payload.get("message") or ""
            except (ValueError, AttributeError):
                message = data.decode(errors="replace")[:500] if data else ""
            raise KubeError(status, reason, message)
        return json.loads(data) if data else None

    def list(self, kind: Kind, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Objects matching a label selector.

        The selector is also re-checked here: an API server honours it, the test emulator
        does not, and deleting somebody else's object would be unforgivable.
        """
        wanted = dict(part.split("=", 1) for part in selector.split(",") if part)
        answer = self._call("GET", kind.collection(namespace), query=[("labelSelector", selector)])
        items = answer.get("items") or []
        return [
            item
            for item in items
            if all((item.get("metadata", {}).get("labels") or {}).get(k) == v for k, v in wanted.items())
        ]

    def create(self, kind: Kind, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", kind.collection(namespace), body=body)
        return result

    def patch(self, kind: Kind, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "PATCH", kind.item(namespace, name), body=patch, content_type=MERGE_PATCH
        )
        return result

    def delete(self, kind: Kind, namespace: str, name: str) -> None:
        # Background propagation: the Deployment's ReplicaSets and pods follow it.
        try:
            self._call(
                "DELETE",
                kind.item(namespace, name),
                body={"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"},
            )
        except KubeError as exc:
            if not exc.not_found:
                raise

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "PATCH",
            CUSTOM.item(namespace, name) + "/status",
            body={"status": status},
            content_type=MERGE_PATCH,
        )
        return result
