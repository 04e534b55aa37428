"""End to end: the Deployment the operator wrote, run as a local process, answers DICOM.

No kubelet exists here, so this test plays it for one pod: it takes the Deployment the real
operator wrote into the emulated API server and starts the container's command and args
with the container's environment (secretKeyRef resolved from the Secret in the emulator)
and the projected config volume materialised from the ConfigMap (mode 0440, group fsGroup),
as the pod's user when the test runs as root. Two things a container runtime would do
differently are mapped, not changed: the mount path (/etc/tenant-server) is a temporary
directory, and the pod's own port 8080 (health) becomes a free local port, since processes
here share one network namespace. The pod's user (runAsUser) is taken only when the test runs
as root and the Python interpreter is reachable by other users (a pyenv under a 0700 /root is
not; the image's /usr/local/bin/python is). Then a DICOM peer sends C-ECHO and C-FIND to the real
Orthanc through it, and SIGTERM must stop it cleanly.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from local_orthanc import OrthancHandle
from local_orthanc.server import free_port
from local_orthanc.synthetic import StudySpec, study_instances, to_bytes
from mtdicom_operator.crd import KIND
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from tests.helpers.orthanc import OrthancRest
from tests.operator.conftest import new_resource, running_operator
from tests.operator.emulator import Emulator, wait_for

NS = "pacs"
NAME = "e2e"


def materialise_volume(emu: Emulator, volume: dict[str, Any], target: Path, group: int | None) -> None:
    """Write a projected volume's files like the kubelet: items, defaultMode, fsGroup."""
    mode = volume["projected"].get("defaultMode", 0o644)
    for source in volume["projected"]["sources"]:
        if "configMap" in source:
            ref, data = source["configMap"], None
            found = emu.must_get("ConfigMap", NS, ref["name"])
            data = {key: value.encode() for key, value in found["data"].items()}
        else:
            ref = source["secret"]
            found = emu.must_get("Secret", NS, ref["name"])
            data = {key: base64.b64decode(value) for key, value in found["data"].items()}
        for item in ref["items"]:
            path = target / item["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data[item["key"]])
            path.chmod(mode)
            if group is not None:
                os.chown(path, 0, group)


def world_reachable(path: Path) -> bool:
    """Whether another user could run this interpreter (not so under a 0700 /root)."""
    return all(parent.stat().st_mode & 0o001 for parent in path.parents) and bool(path.stat().st_mode & 0o001)


def container_env(emu: Emulator, container: dict[str, Any]) -> dict[str, str]:
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            ref = entry["valueFrom"]["secretKeyRef"]
            secret = emu.must_get("Secret", NS, ref["name"])
            env[entry["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
    return env


@contextmanager
def run_pod(
    emu: Emulator, deployment: dict[str, Any], workdir: Path
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """Start the Deployment's single container; yields (process, local health port)."""
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "config"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "config"]
    as_root = os.geteuid() == 0 and world_reachable(Path(os.path.realpath(sys.executable)))
    user = pod["securityContext"]["runAsUser"] if as_root else None
    group = pod["securityContext"]["fsGroup"] if as_root else None
    mounted = workdir / "etc-tenant-server"
    mounted.mkdir()
    materialise_volume(emu, volume, mounted, group)

    # The pod's network namespace: its port 8080 is a free local port here.
    health_port = free_port()
    config_file = mounted / "config.json"
    config = json.loads(config_file.read_text())
    assert config["TenantServer"]["HealthPort"] == 8080
    config["TenantServer"]["HealthPort"] = health_port
    config_file.write_text(json.dumps(config))
    if group is not None:
        os.chown(config_file, 0, group)
    config_file.chmod(0o440)
    if as_root:
        os.chmod(workdir, 0o755)
        os.chmod(mounted, 0o755)

    executable = shutil.which(container["command"][0], path=container_env(emu, container)["PATH"])
    assert executable, f"{container['command'][0]} is not installed"
    args = [arg.replace(mount["mountPath"], str(mounted)) for arg in container["args"]]

    def become_pod_user() -> None:
        if user is not None and group is not None:
            os.setgroups([group])
            os.setgid(pod["securityContext"]["runAsGroup"])
            os.setuid(user)

    log = (workdir / "pod.log").open("wb")
    process = subprocess.Popen(
        [executable, *container["command"][1:], *args],
        env=container_env(emu, container),
        cwd="/",
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=become_pod_user if as_root else None,
    )
    try:
        yield process, health_port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        log.close()


def probe(container: dict[str, Any], name: str, port: int) -> int:
    path = container[name]["httpGet"]["path"]
    try:
        return requests.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code
    except requests.ConnectionError:
        return 0


@pytest.fixture
def labelled_studies(rest: OrthancRest) -> dict[str, StudySpec]:
    """One study for the tenant's label, one for a label it must not see."""
    studies = {"mine": StudySpec(patient_name="E2E^Mine"), "other": StudySpec(patient_name="E2E^Other")}
    for key, spec in studies.items():
        for dataset in study_instances(spec):
            rest.store_with_labels(to_bytes(dataset), [f"e2e_{key}"])
    return studies


def test_the_rendered_pod_serves_dicom(
    emulator: Emulator,
    orthanc: OrthancHandle,
    labelled_studies: dict[str, StudySpec],
    tmp_path: Path,
) -> None:
    emu = emulator
    port = free_port()
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "orthanc-credentials", "namespace": NS},
        "type": "Opaque",
        "data": {
            "username": base64.b64encode(orthanc.username.encode()).decode(),
            "password": base64.b64encode(orthanc.password.encode()).decode(),
        },
    }
    emu.create("Secret", NS, secret)
    resource = new_resource(name=NAME)
    resource["spec"]["orthanc"]["url"] = orthanc.url
    resource["spec"]["servers"] = [{"aet": "E2E", "port": port, "labels": ["e2e_mine"]}]
    with running_operator():
        emu.create(KIND, NS, resource)
        deployment = wait_for(lambda: emu.get("Deployment", NS, "e2e-e2e"), what="the Deployment")

    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][-2:] == ["--server", "E2E"]
    with run_pod(emu, deployment, tmp_path) as (process, health_port):
        log = tmp_path / "pod.log"
        wait_for(
            lambda: probe(container, "readinessProbe", health_port) == 200 or process.poll() is not None,
            timeout=60,
            what="readinessProbe",
        )
        assert process.poll() is None, log.read_text()
        assert probe(container, "livenessProbe", health_port) == 200

        ae = AE(ae_title="E2E_PEER")
        ae.add_requested_context(Verification)
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        assoc = ae.associate("127.0.0.1", port, ae_title="E2E")
        assert assoc.is_established, log.read_text()
        try:
            assert assoc.send_c_echo().Status == 0x0000
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyInstanceUID = ""
            query.PatientName = "E2E^*"
            found = []
            for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
                assert status is not None and status.Status in (0x0000, 0xFF00, 0xFF01)
                if identifier is not None and status.Status in (0xFF00, 0xFF01):
                    found.append(str(identifier.StudyInstanceUID))
        finally:
            assoc.release()
        assert found == [labelled_studies["mine"].study_uid]

        # Graceful shutdown, as the kubelet stops a pod.
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        process.send_signal(signal.SIGTERM)
        start = time.monotonic()
        assert process.wait(grace) == 0, log.read_text()
        assert time.monotonic() - start < grace
