"""The real kopf operator against kmock's emulated API server.

What the emulator cannot show (it has no kubelet, controllers, garbage collector, schema or
CEL) is covered elsewhere: Deployment status is written here the way the Deployment
controller would, owner references are asserted instead of garbage collection, and the
schemas and CEL rules are checked in test_schemas.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

from mtdicom_operator.crd import API_VERSION, KIND

from tests.operator.conftest import (
    condition,
    new_resource,
    operator_errors,
    running_operator,
    wait_ready,
)
from tests.operator.emulator import Emulator, wait_for

NS = "pacs"
NAME = "hello-tenants"
KINDS = ("ConfigMap", "Deployment", "Service")


def ours(emu: Emulator, since: int = 0) -> list[Any]:
    """Requests the operator's own client sent (not kopf's, not the test's)."""
    return [r for r in emu.recorded()[since:] if r.headers.get("User-Agent") == "mtdicom-operator"]


def children(emu: Emulator, namespace: str = NS) -> dict[str, set[str]]:
    return {kind: emu.names(kind, namespace) for kind in KINDS}


def config_hashes(emu: Emulator) -> dict[str, str]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"]["mtdicom.io/config-hash"]
        for d in emu.items("Deployment", NS)
    }


def test_create_update_remove_a_server_and_delete(emulator: Emulator) -> None:
    emu = emulator
    with running_operator() as runner:
        created = emu.create(KIND, NS, new_resource())
        uid = created["metadata"]["uid"]
        both = {"hello-tenants-hello", "hello-tenants-world"}
        wait_for(lambda: children(emu) == {kind: both for kind in KINDS}, what="children")

        # Every child is owned by the resource (garbage collection is the API server's job).
        for kind in KINDS:
            for item in emu.items(kind, NS):
                (owner,) = item["metadata"]["ownerReferences"]
                assert owner == {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": NAME,
                    "uid": uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
        config = json.loads(emu.must_get("ConfigMap", NS, "hello-tenants-hello")["data"]["config.json"])
        assert config["MultitenantDicom"]["Servers"][0]["Labels"] == ["hello"]

        resource = wait_ready(emu, NS, NAME)
        status = resource["status"]
        assert status["observedGeneration"] == 1
        assert status["readyServers"] == "2/2"
        assert {s["aet"]: s["endpoint"] for s in status["servers"]} == {
            "HELLO": "hello-tenants-hello.pacs.svc:4343",
            "WORLD": "hello-tenants-world.pacs.svc:4344",
        }
        assert condition(resource, "Progressing")["status"] == "False"
        assert condition(resource, "Degraded")["status"] == "False"
        events = [e for e in emu.items("Event", NS) if e.get("involvedObject", {}).get("uid") == uid]
        assert any(e["reason"] == "Reconciled" and "created 6" in e["message"] for e in events), emu.items(
            "Event", NS
        )

        # A label change rolls only that tenant's pods (its pod template's config hash).
        before = config_hashes(emu)
        spec = resource["spec"]
        spec["servers"][0]["labels"] = ["hello", "greetings"]
        emu.patch(KIND, NS, NAME, {"spec": {"servers": spec["servers"]}})
        wait_for(
            lambda: config_hashes(emu)["hello-tenants-hello"] != before["hello-tenants-hello"], what="rollout"
        )
        assert config_hashes(emu)["hello-tenants-world"] == before["hello-tenants-world"]
        config = json.loads(emu.must_get("ConfigMap", NS, "hello-tenants-hello")["data"]["config.json"])
        assert config["MultitenantDicom"]["Servers"][0]["Labels"] == ["hello", "greetings"]
        resource = wait_ready(emu, NS, NAME)
        assert resource["status"]["observedGeneration"] == 2

        # A server leaving the spec takes its ConfigMap, Deployment and Service along.
        emu.patch(KIND, NS, NAME, {"spec": {"servers": [spec["servers"][0]]}})
        only = {"hello-tenants-hello"}
        wait_for(lambda: children(emu) == {kind: only for kind in KINDS}, what="WORLD's children gone")
        resource = wait_ready(emu, NS, NAME)
        assert resource["status"]["readyServers"] == "1/1"
        assert [s["aet"] for s in resource["status"]["servers"]] == ["HELLO"]

        # Deleting the resource: kopf's finalizer is released and the resource goes away.
        assert "mtdicom.io/finalizer" in emu.must_get(KIND, NS, NAME)["metadata"]["finalizers"]
        emu.delete(KIND, NS, NAME)
        wait_for(lambda: emu.get(KIND, NS, NAME) is None, what="resource deleted")
        # The emulator has no garbage collector; the owner references above are what a real
        # one follows. Collecting by hand must leave nothing behind and upset nobody.
        assert sorted(emu.collect_garbage(NS, uid)) == [
            f"{kind}/hello-tenants-hello" for kind in sorted(KINDS)
        ]
        time.sleep(1)
        assert children(emu) == {kind: set() for kind in KINDS}
    assert operator_errors(runner) == []


def test_reconciliation_is_idempotent_across_restarts(emulator: Emulator) -> None:
    emu = emulator
    with running_operator():
        emu.create(KIND, NS, new_resource())
        wait_ready(emu, NS, NAME)
    since = len(emu.recorded())
    snapshot = {kind: emu.items(kind, NS) for kind in KINDS}
    with running_operator() as runner:
        # The resume handler lists the children again...
        wait_for(
            lambda: any(r.resource and r.resource.plural == "services" for r in ours(emu, since)),
            what="resume",
        )
        time.sleep(1)
    assert "Handler 'reconcile' succeeded" in runner.output
    # ...and finds nothing to write.
    writes = [r for r in ours(emu, since) if str(r.method) != "method.GET"]
    assert [r for r in writes if r.resource.plural in {"configmaps", "deployments", "services"}] == []
    assert {kind: emu.items(kind, NS) for kind in KINDS} == snapshot


def test_invalid_spec_is_reported_once_not_retried(emulator: Emulator) -> None:
    emu = emulator
    resource = new_resource()
    resource["spec"]["servers"][1]["port"] = 4343
    with running_operator() as runner:
        emu.create(KIND, NS, resource)

        def degraded() -> dict[str, Any]:
            return condition(emu.get(KIND, NS, NAME), "Degraded")

        wait_for(lambda: degraded().get("reason") == "InvalidSpec", what="InvalidSpec")
        assert "spec.servers[1].port: 4343 is already used by servers[0]" in degraded()["message"]
        assert condition(emu.get(KIND, NS, NAME), "Ready")["status"] == "False"
        warnings = [e for e in emu.items("Event", NS) if e.get("reason") == "InvalidSpec"]
        assert warnings and warnings[0]["type"] == "Warning"
        time.sleep(2)  # several status intervals: nothing is retried, nothing is created
        assert ours(emu) == [r for r in ours(emu) if r.subresource == "status"]
        assert children(emu) == {kind: set() for kind in KINDS}

        resource["spec"]["servers"][1]["port"] = 4344
        emu.patch(KIND, NS, NAME, {"spec": resource["spec"]})
        wait_ready(emu, NS, NAME)
        assert condition(emu.get(KIND, NS, NAME), "Degraded")["status"] == "False"
    assert runner.output.count("Handler 'reconcile' failed permanently") == 1


def test_api_errors_are_retried_and_reported(emulator: Emulator) -> None:
    emu = emulator
    squatter = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "hello-tenants-world", "namespace": NS},
    }
    emu.create("ConfigMap", NS, squatter)
    with running_operator() as runner:
        emu.create(KIND, NS, new_resource())

        def degraded() -> dict[str, Any]:
            return condition(emu.get(KIND, NS, NAME), "Degraded")

        wait_for(lambda: degraded().get("reason") == "ReconcileFailed", what="ReconcileFailed")
        assert (
            "ConfigMap/hello-tenants-world exists and is not controlled by hello-tenants"
            in degraded()["message"]
        )
        # The foreign ConfigMap is never taken over.
        assert "ownerReferences" not in emu.must_get("ConfigMap", NS, "hello-tenants-world")["metadata"]

        def attempts() -> int:
            return len(
                [r for r in ours(emu) if str(r.method) == "method.POST" and r.resource.plural == "configmaps"]
            )

        wait_for(lambda: attempts() >= 4, what="retries with backoff")

        emu.delete("ConfigMap", NS, "hello-tenants-world")
        wait_ready(emu, NS, NAME)
        assert condition(emu.get(KIND, NS, NAME), "Degraded")["status"] == "False"
    assert "failed temporarily" in runner.output


def test_deleted_children_are_recreated(emulator: Emulator) -> None:
    emu = emulator
    with running_operator():
        emu.create(KIND, NS, new_resource())
        wait_ready(emu, NS, NAME)
        emu.delete("Service", NS, "hello-tenants-world")
        emu.delete("Deployment", NS, "hello-tenants-hello")
        wait_for(
            lambda: (
                {"hello-tenants-world"} <= emu.names("Service", NS)
                and {"hello-tenants-hello"} <= emu.names("Deployment", NS)
            ),
            what="children recreated",
        )
        wait_ready(emu, NS, NAME)
        assert any(e["reason"] == "DriftRepaired" for e in emu.items("Event", NS))


def test_failed_rollout_is_degraded(emulator: Emulator) -> None:
    emu = emulator
    with running_operator():
        emu.create(KIND, NS, new_resource())
        wait_ready(emu, NS, NAME)
        stuck = {
            "conditions": [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": 'ReplicaSet "hello-tenants-hello-7d9" has timed out progressing.',
                }
            ]
        }
        emu.patch("Deployment", NS, "hello-tenants-hello", {"status": stuck}, "status")

        def degraded() -> dict[str, Any]:
            return condition(emu.get(KIND, NS, NAME), "Degraded")

        wait_for(lambda: degraded().get("reason") == "DeploymentFailed", what="DeploymentFailed")
        assert degraded()["message"].startswith("HELLO: ProgressDeadlineExceeded")
        assert condition(emu.get(KIND, NS, NAME), "Ready")["status"] == "False"


def test_namespaced_operator_ignores_other_namespaces(emulator: Emulator) -> None:
    emu = emulator
    with running_operator("--namespace", NS):
        emu.create(KIND, "other", new_resource(namespace="other"))
        emu.create(KIND, NS, new_resource())
        wait_ready(emu, NS, NAME)
        assert children(emu, "other") == {kind: set() for kind in KINDS}
