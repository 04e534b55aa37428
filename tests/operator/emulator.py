"""kmock's KubernetesEmulator on a thread of its own, and a small independent client for it.

The operator under test (kopf in KopfRunner's thread, plus our handlers in kopf's worker
threads) and the test body both talk to the emulator over HTTP, as they would to a real
API server. Running the emulator in its own event loop means a blocked test thread can
never starve it.

The test client here is deliberately not the operator's ``Kube`` class: observations must
not go through the code under test.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import jsonpatch
import kmock
import requests
import yaml
from kmock._internal import dicts as kmock_dicts
from mtdicom_operator.crd import API_VERSION, GROUP, KIND, PLURAL, VERSION, build_crd

T = TypeVar("T")


def _patch_kmock_namespaces() -> None:
    """Teach kmock 0.8 the cluster-scoped ``/api/v1/namespaces[/name]`` URLs.

    Its path parser reads ``namespaces`` as the start of ``namespaces/{ns}/...`` and fails
    on the bare collection (HTTP 500), which kopf lists and watches in namespaced mode.
    """
    from kmock._internal import parsing

    original = parsing.parse_path
    if getattr(original, "_mtdicom_patched", False):
        return

    def parse_path(path: str) -> parsing.ParsedPath:
        parts = path.strip("/").split("/")
        if parts[:3] == ["api", "v1", "namespaces"] and len(parts) <= 4:
            return parsing.ParsedPath(
                "", "v1", "namespaces", None, parts[3] if len(parts) == 4 else None, None
            )
        return original(path)

    parse_path._mtdicom_patched = True  # type: ignore[attr-defined]
    parsing.parse_path = parse_path


_patch_kmock_namespaces()

RESOURCES: dict[str, dict[str, Any]] = {
    f"{GROUP}/{VERSION}/{PLURAL}": {
        "kind": KIND,
        "namespaced": True,
        "subresources": {"status"},
        "shortnames": {"mtds"},
        "verbs": {"list", "watch", "get", "create", "patch", "delete"},
    },
    "v1/configmaps": {"kind": "ConfigMap", "namespaced": True},
    "v1/services": {"kind": "Service", "namespaced": True, "subresources": {"status"}},
    "v1/events": {"kind": "Event", "namespaced": True},
    "v1/secrets": {"kind": "Secret", "namespaced": True},
    "v1/namespaces": {"kind": "Namespace", "namespaced": False},
    "apps/v1/deployments": {"kind": "Deployment", "namespaced": True, "subresources": {"status"}},
    "apiextensions.k8s.io/v1/customresourcedefinitions": {
        "kind": "CustomResourceDefinition",
        "namespaced": False,
    },
}
DEFAULT_VERBS = {"list", "watch", "get", "create", "patch", "delete"}
PATHS = {
    "ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
    "Service": "/api/v1/namespaces/{ns}/services",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "Event": "/api/v1/namespaces/{ns}/events",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
    KIND: f"/apis/{API_VERSION}/namespaces/{{ns}}/{PLURAL}",
}


_VERSIONS = itertools.count(1)


class StampingEmulator(kmock.KubernetesEmulator):
    """kmock plus what a real API server stamps on objects, which kopf and the status rely on.

    kmock stores objects verbatim; a real API server fills ``generateName`` (kopf's Events use
    it), sets ``uid``, ``creationTimestamp``,
    a fresh ``resourceVersion`` on every write (kopf waits for its own patches to come back
    by it) and ``generation`` on spec changes (observedGeneration is checked against it),
    and keeps a resource's ``status`` and its main body apart when it has a status
    subresource.
    """

    history: list[Any]

    async def _handle(self, request: Any) -> Any:
        # kmock matches every request against all earlier ones (its request views), which
        # grows quadratically: at 100 tenants each request took ~0.1 s. The history is kept
        # here instead and kmock's own list trimmed to the request being served.
        if not hasattr(self, "history"):
            self.history = []
        self.history.append(request)
        del self._requests[:-1]
        if request.resource is not None and isinstance(request.data, dict | list):
            self._check_version(request)
            self._stamp(request)
        return await super()._handle(request)

    def _check_version(self, request: Any) -> None:
        """A JSON patch testing an old resourceVersion is refused with 422, as kopf expects."""
        if not isinstance(request.data, list) or request.name is None:
            return
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return
        current = self.objects[key].raw.get("metadata", {}).get("resourceVersion")
        for op in request.data:
            if (
                op.get("op") == "test"
                and op.get("path") == "/metadata/resourceVersion"
                and op.get("value") != current
            ):
                raise kmock.KubernetesError(
                    status=422, reason="Invalid", message="the object has been modified"
                )

    def _KubernetesEmulator__get_objs(self, request: Any, strict: bool) -> list[Any]:
        """kmock's object lookup without scanning every object for a named request."""
        objects = self._objects._objects
        if request.name is not None and (strict or request.namespace is not None):
            found = objects.get((request.resource, request.namespace, request.name))
            return [found] if found is not None else []
        wanted = (request.resource.group, request.resource.version, request.resource.plural)
        return [
            obj
            for (resource, namespace, name), obj in objects.items()
            if (resource.group, resource.version, resource.plural) == wanted
            and (namespace == request.namespace if strict else request.namespace in (None, namespace))
            and (request.name is None or name == request.name)
        ]

    async def _serve_list(self, request: Any) -> Any:
        """Lists honour equality label selectors, as a real API server does (kmock ignores them)."""
        payload = await super()._serve_list(request)
        selector = request.params.get("labelSelector")
        if selector and isinstance(payload, dict):
            wanted = dict(part.split("=", 1) for part in selector.split(",") if "=" in part)
            payload["items"] = [
                item
                for item in payload["items"]
                if all((item.get("metadata", {}).get("labels") or {}).get(k) == v for k, v in wanted.items())
            ]
        return payload

    def _has_status(self, resource: Any) -> bool:
        key = f"{resource.group}/{resource.version}/{resource.plural}".lstrip("/")
        return "status" in RESOURCES.get(key, {}).get("subresources", set())

    def _stamp(self, request: Any) -> None:
        data = request.data
        version = str(next(_VERSIONS))
        if request.action == kmock.action.CREATE and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            meta.setdefault("generation", 1)
            meta["resourceVersion"] = version
            return
        if request.action != kmock.action.UPDATE or request.name is None:
            return
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return
        old = copy.deepcopy(dict(self.objects[key].raw))
        to_status = request.subresource == "status"
        split = to_status or self._has_status(request.resource)
        if isinstance(data, dict):
            if split:
                for field in list(data):
                    if (field == "status") != to_status and not (field == "metadata" and not to_status):
                        del data[field]
            new = kmock_dicts.patch_dict(copy.deepcopy(old), data)
            meta = data.setdefault("metadata", {})
        else:
            if split:
                data[:] = [
                    op
                    for op in data
                    if op.get("op") == "test" or op["path"].startswith("/status") == to_status
                ]
            new = jsonpatch.apply_patch(copy.deepcopy(old), [op for op in data if op.get("op") != "test"])
            meta = {}
            data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})
        generation = int(old.get("metadata", {}).get("generation") or 1)
        if new.get("spec") != old.get("spec"):
            generation += 1
        if isinstance(data, dict):
            meta["resourceVersion"] = version
            meta["generation"] = generation
        else:
            data.append({"op": "add", "path": "/metadata/generation", "value": generation})


class Emulator:
    """A running KubernetesEmulator: ``url``, the recorded ``requests()``, HTTP helpers."""

    def __init__(self, namespaces: tuple[str, ...] = ("default",)) -> None:
        self.namespaces = namespaces
        self.loop = asyncio.new_event_loop()
        self.handler: StampingEmulator | None = None
        self.url = ""
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="kmock", daemon=True)
        self.http = requests.Session()

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        async with StampingEmulator() as handler, kmock.Server(handler) as server:
            for key, info in RESOURCES.items():
                handler.resources[key] = kmock.ResourceInfo(
                    kind=info["kind"],
                    namespaced=info["namespaced"],
                    subresources=info.get("subresources", set()),
                    shortnames=info.get("shortnames", set()),
                    verbs=info.get("verbs", DEFAULT_VERBS),
                )
            for namespace in self.namespaces:
                handler.objects["v1/namespaces", None, namespace] = {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": namespace},
                }
            crd = build_crd()
            handler.objects[
                "apiextensions.k8s.io/v1/customresourcedefinitions", None, crd["metadata"]["name"]
            ] = crd
            self.handler = handler
            self.url = str(server.url).rstrip("/")
            self._ready.set()
            await self._stop.wait()

    def start(self) -> Emulator:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError("the emulator did not start") from self._error
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self.http.close()

    # --- what the operator did ---------------------------------------------------

    def recorded(self) -> list[Any]:
        assert self.handler is not None
        return list(getattr(self.handler, "history", []))

    def write_kubeconfig(self, path: Path, namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "kmock", "cluster": {"server": self.url}}],
            "users": [{"name": "kmock", "user": {"token": "emulator-token"}}],
            "contexts": [
                {"name": "kmock", "context": {"cluster": "kmock", "user": "kmock", "namespace": namespace}}
            ],
            "current-context": "kmock",
        }
        path.write_text(yaml.safe_dump(config))
        return path

    # --- an independent client -------------------------------------------------------

    def _json(self, response: requests.Response) -> Any:
        response.raise_for_status()
        return response.json()

    def items(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._json(
            self.http.get(self.url + PATHS[kind].format(ns=namespace), timeout=30)
        )["items"]
        return items

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        response = self.http.get(self.url + PATHS[kind].format(ns=namespace) + "/" + name, timeout=30)
        if response.status_code == 404:
            return None
        result: dict[str, Any] = self._json(response)
        return result

    def create(self, kind: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._json(
            self.http.post(self.url + PATHS[kind].format(ns=namespace), json=body, timeout=30)
        )
        return result

    def patch(
        self, kind: str, namespace: str, name: str, patch: dict[str, Any], subresource: str = ""
    ) -> Any:
        url = (
            self.url
            + PATHS[kind].format(ns=namespace)
            + "/"
            + name
            + (f"/{subresource}" if subresource else "")
        )
        headers = {"Content-Type": "application/merge-patch+json"}
        return self._json(self.http.patch(url, json=patch, headers=headers, timeout=30))

    def delete(self, kind: str, namespace: str, name: str) -> None:
        self._json(self.http.delete(self.url + PATHS[kind].format(ns=namespace) + "/" + name, timeout=30))

    def must_get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        found = self.get(kind, namespace, name)
        assert found is not None, f"{kind} {namespace}/{name} does not exist"
        return found

    def names(self, kind: str, namespace: str) -> set[str]:
        return {item["metadata"]["name"] for item in self.items(kind, namespace)}

    # --- what a kubelet/controller-manager would do ------------------------------------

    def collect_garbage(self, namespace: str, owner_uid: str) -> list[str]:
        """Play the garbage collector: delete what the (deleted) owner controlled."""
        removed = []
        for kind in ("Service", "Deployment", "ConfigMap"):
            for item in self.items(kind, namespace):
                if any(ref.get("uid") == owner_uid for ref in item["metadata"].get("ownerReferences") or []):
                    self.delete(kind, namespace, item["metadata"]["name"])
                    removed.append(f"{kind}/{item['metadata']['name']}")
        return removed

    def finish_rollouts(self, namespace: str) -> None:
        """Play the Deployment controller: every Deployment's pods are up to date and ready."""
        for deployment in self.items("Deployment", namespace):
            replicas = deployment["spec"].get("replicas", 1)
            status = {
                "observedGeneration": deployment["metadata"].get("generation", 1),
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
            }
            if deployment.get("status") != status:
                self.patch(
                    "Deployment", namespace, deployment["metadata"]["name"], {"status": status}, "status"
                )


def wait_for(
    check: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.1, what: str = ""
) -> T:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}: last {last!r}")


@contextmanager
def running_emulator(namespaces: tuple[str, ...] = ("default",)) -> Iterator[Emulator]:
    emulator = Emulator(namespaces).start()
    try:
        yield emulator
    finally:
        emulator.stop()
