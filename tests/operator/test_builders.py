"""The pure builders: a MultitenantDicomServer in, tenant configuration and children out."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from mtdicom_operator import naming
from mtdicom_operator.builders import (
    CONFIG_PATH,
    Owner,
    build_children,
    build_configmap,
    build_deployment,
    build_service,
    config_hash,
    render_tenant_config,
)
from mtdicom_operator.crd import DEFAULT_IMAGE, apply_defaults

from tests.operator.samples import OWNER, full_spec, hello_spec


def server(spec: dict[str, Any], aet: str) -> dict[str, Any]:
    (found,) = [s for s in spec["servers"] if s["aet"] == aet]
    return found


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return only


# --- the tenant-server configuration ---------------------------------------------------


def test_hello_config_follows_the_contract() -> None:
    spec = hello_spec()
    config = render_tenant_config(spec, server(spec, "HELLO"))
    assert config["Orthanc"] == {"Url": "http://orthanc:8042"}
    assert config["DicomModalities"] == {
        "viewer": {"AET": "VIEWER", "Host": "viewer.example.org", "Port": 11112}
    }
    assert config["DicomAlwaysAllowEcho"] is True
    assert config["DicomAlwaysAllowFind"] is True
    assert config["DicomAlwaysAllowMove"] is True
    assert config["DicomAlwaysAllowStore"] is True
    assert config["DicomAlwaysAllowGet"] is False
    assert config["DicomScpTimeout"] == 30
    assert config["MaximumPduLength"] == 16384
    assert config["MultitenantDicom"] == {
        "Servers": [
            {
                "AET": "HELLO",
                "Port": 4343,
                "Labels": ["hello"],
                "LabelsConstraint": "All",
                "LabelsStoreLevels": ["Study", "Series", "Instance"],
                "StoreIsolation": "Strict",
            }
        ]
    }
    assert config["TenantServer"] == {
        "HealthPort": 8080,
        "BindAddress": "0.0.0.0",
        "ShutdownGracePeriod": 25,
        "AuditQueryValues": False,
    }
    assert "LimitFindResults" not in config


def test_config_never_holds_credentials() -> None:
    spec = full_spec()
    for entry in spec["servers"]:
        text = json.dumps(render_tenant_config(spec, entry))
        assert "Password" not in text and "Username" not in text
        assert "orthanc-credentials" not in text


def test_each_server_file_holds_only_that_server() -> None:
    spec = hello_spec()
    for entry in spec["servers"]:
        servers = render_tenant_config(spec, entry)["MultitenantDicom"]["Servers"]
        assert [s["AET"] for s in servers] == [entry["aet"]]


def test_extensions_are_rendered_when_set() -> None:
    spec = full_spec()
    cardio = render_tenant_config(spec, server(spec, "CARDIO"))["MultitenantDicom"]["Servers"][0]
    assert cardio["AllowedCallers"] == [
        "CT1",
        {"AET": "VIEWER", "Hosts": ["10.0.0.7"], "Permissions": ["Echo", "Find", "Move", "Get"]},
    ]
    assert cardio["AllowedMoveDestinations"] == ["viewer"]
    assert cardio["MaxAssociations"] == 32
    assert cardio["MaxAssociationsPerCaller"] == 8
    assert cardio["Tls"] == {
        "Certificate": "/etc/tenant-server/tls/tls.crt",
        "PrivateKey": "/etc/tenant-server/tls/tls.key",
        "TrustedCertificates": "/etc/tenant-server/tls/ca.crt",
        "RequireClientCertificate": True,
    }
    neuro = render_tenant_config(spec, server(spec, "NEURO"))["MultitenantDicom"]["Servers"][0]
    assert neuro["LabelsConstraint"] == "Any"
    for key in ("AllowedCallers", "AllowedMoveDestinations", "MaxAssociations", "Tls", "AllowEmptyLabels"):
        assert key not in neuro
    config = render_tenant_config(spec, server(spec, "NEURO"))
    assert config["DicomModalities"]["ct1"] == {
        "AET": "CT1",
        "Host": "10.0.0.5",
        "Port": 104,
        "AllowMove": False,
        "AllowGet": False,
    }
    assert config["LimitFindResults"] == 500
    assert config["DefaultEncoding"] == "Latin1"
    assert config["DicomCheckCalledAet"] is True


def test_tls_without_client_certificates_needs_no_ca() -> None:
    spec = hello_spec()
    spec["servers"][0]["tls"] = {"secretName": "hello-tls"}
    tls = render_tenant_config(spec, spec["servers"][0])["MultitenantDicom"]["Servers"][0]["Tls"]
    assert tls == {
        "Certificate": "/etc/tenant-server/tls/tls.crt",
        "PrivateKey": "/etc/tenant-server/tls/tls.key",
    }
    volume = build_deployment(OWNER, spec, spec["servers"][0])["spec"]["template"]["spec"]["volumes"][0]
    secret = volume["projected"]["sources"][1]["secret"]
    assert secret["name"] == "hello-tls"
    assert [item["key"] for item in secret["items"]] == ["tls.crt", "tls.key"]


def test_orthanc_ca_is_mounted_and_named_by_ssl_cert_file() -> None:
    spec = full_spec()
    deployment = build_deployment(OWNER, spec, spec["servers"][0])
    env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
    assert env["SSL_CERT_FILE"] == "/etc/tenant-server/orthanc-ca/ca.crt"
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"]
    ca = [s["secret"] for s in volume["projected"]["sources"] if s.get("secret", {}).get("name") == "pacs-ca"]
    assert ca == [{"name": "pacs-ca", "items": [{"key": "ca.crt", "path": "orthanc-ca/ca.crt"}]}]
    without = copy.deepcopy(spec)
    del without["orthanc"]["caSecret"]
    plain = build_deployment(OWNER, without, without["servers"][0])
    assert "SSL_CERT_FILE" not in {e["name"] for e in container(plain)["env"]}
    assert config_hash(without, without["servers"][0]) != config_hash(spec, spec["servers"][0])


# --- the config hash --------------------------------------------------------------------


def test_label_change_changes_only_that_servers_hash() -> None:
    spec = hello_spec()
    before = {s["aet"]: config_hash(spec, s) for s in spec["servers"]}
    changed = copy.deepcopy(spec)
    server(changed, "HELLO")["labels"] = ["hello", "extra"]
    after = {s["aet"]: config_hash(changed, s) for s in changed["servers"]}
    assert after["HELLO"] != before["HELLO"]
    assert after["WORLD"] == before["WORLD"]


def test_hash_follows_secret_names_not_replicas() -> None:
    spec = hello_spec()
    base = config_hash(spec, spec["servers"][0])
    renamed = copy.deepcopy(spec)
    renamed["orthanc"]["credentialsSecret"]["name"] = "rotated-credentials"
    assert config_hash(renamed, renamed["servers"][0]) != base
    scaled = copy.deepcopy(spec)
    scaled["servers"][0]["replicas"] = 3
    assert config_hash(scaled, scaled["servers"][0]) == base


def test_defaults_written_out_or_left_to_the_api_server_render_the_same() -> None:
    spec = hello_spec()
    assert build_children(OWNER, spec) == build_children(OWNER, apply_defaults(spec))


# --- the children -----------------------------------------------------------------------


def test_every_child_is_owned_labelled_and_named_alike() -> None:
    children = build_children(OWNER, hello_spec())
    assert [c["kind"] for c in children] == ["ConfigMap", "Deployment", "Service"] * 2
    for child in children:
        meta = child["metadata"]
        assert meta["namespace"] == "pacs"
        assert meta["ownerReferences"] == [
            {
                "apiVersion": "mtdicom.io/v1alpha1",
                "kind": "MultitenantDicomServer",
                "name": "hello-tenants",
                "uid": OWNER.uid,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        labels = meta["labels"]
        assert labels["app.kubernetes.io/name"] == "multitenant-dicom"
        assert labels["app.kubernetes.io/instance"] == "hello-tenants"
        assert labels["app.kubernetes.io/component"] == "tenant-server"
        assert labels["app.kubernetes.io/part-of"] == "multitenant-dicom"
        assert labels["app.kubernetes.io/managed-by"] == "mtdicom-operator"
        assert labels["app.kubernetes.io/version"] == "0.1.0"
    names = {(c["kind"], c["metadata"]["name"]) for c in children}
    assert names == {
        (kind, name)
        for kind in ("ConfigMap", "Deployment", "Service")
        for name in ("hello-tenants-hello", "hello-tenants-world")
    }


def test_configmap_holds_the_rendered_config() -> None:
    spec = hello_spec()
    configmap = build_configmap(OWNER, spec, spec["servers"][0])
    assert json.loads(configmap["data"]["config.json"]) == render_tenant_config(spec, spec["servers"][0])


def test_deployment_runs_the_tenant_server_for_its_aet() -> None:
    spec = hello_spec()
    hello = server(spec, "HELLO")
    deployment = build_deployment(OWNER, spec, hello)
    pod = deployment["spec"]["template"]
    main = container(deployment)
    assert main["image"] == DEFAULT_IMAGE
    assert main["command"] == ["tenant-server"]
    assert main["args"] == ["--config", CONFIG_PATH, "--server", "HELLO"]
    assert CONFIG_PATH == "/etc/tenant-server/config.json"
    env = {e["name"]: e for e in main["env"]}
    assert env["ORTHANC_URL"] == {"name": "ORTHANC_URL", "value": "http://orthanc:8042"}
    assert env["ORTHANC_USERNAME"]["valueFrom"] == {
        "secretKeyRef": {"name": "orthanc-credentials", "key": "username"}
    }
    assert env["ORTHANC_PASSWORD"]["valueFrom"] == {
        "secretKeyRef": {"name": "orthanc-credentials", "key": "password"}
    }
    assert {p["name"]: p["containerPort"] for p in main["ports"]} == {"dicom": 4343, "http": 8080}
    assert main["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
    assert main["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {"name": "config", "mountPath": "/etc/tenant-server", "readOnly": True} in main["volumeMounts"]
    assert pod["metadata"]["annotations"]["mtdicom.io/config-hash"] == config_hash(spec, hello)
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "8080"
    assert deployment["spec"]["selector"]["matchLabels"] == naming.selector_labels("hello-tenants", "HELLO")
    assert pod["metadata"]["labels"].items() >= deployment["spec"]["selector"]["matchLabels"].items()
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_restricted_security_by_default() -> None:
    spec = hello_spec()
    deployment = build_deployment(OWNER, spec, spec["servers"][0])
    assert deployment["spec"]["template"]["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container(deployment)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert {"name": "tmp", "mountPath": "/tmp"} in container(deployment)["volumeMounts"]


def test_per_server_replicas_resources_and_pod_placement() -> None:
    spec = full_spec()
    cardio = build_deployment(OWNER, spec, server(spec, "CARDIO"))
    neuro = build_deployment(OWNER, spec, server(spec, "NEURO"))
    assert cardio["spec"]["replicas"] == 2 and neuro["spec"]["replicas"] == 1
    assert container(cardio)["resources"] == {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"memory": "512Mi"},
    }
    pod = cardio["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "dedicated"
    assert pod["terminationGracePeriodSeconds"] == 60


def test_service_types() -> None:
    spec = full_spec()
    cardio = build_service(OWNER, spec, server(spec, "CARDIO"))
    assert cardio["spec"]["type"] == "LoadBalancer"
    assert cardio["spec"]["loadBalancerSourceRanges"] == ["10.0.0.0/16"]
    assert cardio["spec"]["externalTrafficPolicy"] == "Local"
    assert (
        cardio["metadata"]["annotations"]["service.beta.kubernetes.io/aws-load-balancer-internal"] == "true"
    )
    assert cardio["spec"]["ports"] == [
        {"name": "dicom", "port": 11112, "targetPort": "dicom", "protocol": "TCP"}
    ]
    neuro = build_service(OWNER, spec, server(spec, "NEURO"))
    assert neuro["spec"]["type"] == "NodePort"
    assert neuro["spec"]["ports"][0]["nodePort"] == 31113
    teaching = build_service(OWNER, spec, server(spec, "TEACHING"))
    assert teaching["spec"]["type"] == "ClusterIP"
    assert "nodePort" not in teaching["spec"]["ports"][0]
    assert teaching["spec"]["selector"] == naming.selector_labels(OWNER.name, "TEACHING")


def test_owner_from_a_body() -> None:
    body = {"metadata": {"name": "x", "namespace": "ns", "uid": "u", "generation": 7}}
    assert Owner.from_body(body) == Owner("x", "ns", "u", 7)
    assert Owner.from_body({"metadata": {"name": "x", "namespace": "ns"}}) == Owner("x", "ns", "", None)


@pytest.mark.parametrize("aet", ["HELLO", "A B", "ct_1", "x.y", "Über"[1:], "9LIVES"])
def test_unusual_aets_render(aet: str) -> None:
    spec = hello_spec()
    spec["servers"] = [{"aet": aet, "port": 104, "labels": ["l"]}]
    deployment = build_deployment(OWNER, spec, spec["servers"][0])
    assert container(deployment)["args"][-1] == aet
    assert deployment["spec"]["template"]["metadata"]["annotations"]["mtdicom.io/aet"] == aet


@pytest.mark.parametrize("termination,grace", [(30, 25), (60, 55), (9, 6), (3, 2), (1, 1)])
def test_server_exits_before_the_kubelet_kills_it(termination: int, grace: int) -> None:
    spec = {**hello_spec(), "terminationGracePeriodSeconds": termination, "auditQueryValues": True}
    config = render_tenant_config(spec, spec["servers"][0])
    assert config["TenantServer"]["ShutdownGracePeriod"] == grace
    assert config["TenantServer"]["AuditQueryValues"] is True
    pod = build_deployment(OWNER, spec, spec["servers"][0])["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == termination
