"""Fixtures for running the real kopf operator against kmock's emulated API server."""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner

from tests.operator.emulator import Emulator, running_emulator, wait_for
from tests.operator.samples import hello_resource

NAMESPACES = ("pacs", "default", "other")


@pytest.fixture
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """An emulated API server the operator reaches through an ordinary kubeconfig."""
    with running_emulator(NAMESPACES) as emu:
        monkeypatch.setenv("KUBECONFIG", str(emu.write_kubeconfig(tmp_path / "kubeconfig")))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
        monkeypatch.setenv("MTDICOM_STATUS_INTERVAL", "0.3")
        monkeypatch.setenv("MTDICOM_STATUS_INITIAL_DELAY", "0.1")
        monkeypatch.setenv("MTDICOM_BACKOFF_BASE", "0.25")
        monkeypatch.setenv("MTDICOM_BACKOFF_MAX", "2")
        yield emu


@contextmanager
def running_operator(*scope: str) -> Iterator[KopfRunner]:
    """``kopf run --standalone -m mtdicom_operator`` (the image's command) in a thread.

    On exit the operator is stopped like on SIGTERM and any exception it died of is raised.
    """
    args = ["run", "--standalone", "-m", "mtdicom_operator", "--verbose", *(scope or ("--all-namespaces",))]
    with KopfRunner(args, reraise=True) as runner:
        yield runner
    assert runner.exit_code == 0, runner.output[-3000:]


@contextmanager
def operator_process(log: Path, *scope: str) -> Iterator[subprocess.Popen[bytes]]:
    """The operator as its own process, through the CLI the image runs.

    The scale check uses it so that the operator does not share a GIL with the emulator
    and the test (as it would not share a machine with the API server).
    """
    args = [sys.executable, "-m", "kopf", "run", "--standalone", "-m", "mtdicom_operator"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*args, *(scope or ("--all-namespaces",))], stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield process
        finally:
            process.terminate()  # SIGTERM, as the kubelet sends: kopf stops gracefully
            code = process.wait(60)
    assert code == 0, log.read_text()[-3000:]


def operator_errors(runner: KopfRunner | Path) -> list[str]:
    """Log lines of the operator at ERROR level (kopf logs handler failures there)."""
    output = runner.read_text() if isinstance(runner, Path) else runner.output
    return [line for line in output.splitlines() if "[ERROR" in line]


def new_resource(
    namespace: str = "pacs", name: str = "hello-tenants", spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    resource = hello_resource()
    resource["metadata"] = {"name": name, "namespace": namespace}
    if spec is not None:
        resource["spec"] = copy.deepcopy(spec)
    return resource


def condition(resource: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    for entry in ((resource or {}).get("status") or {}).get("conditions") or []:
        if entry["type"] == type_:
            return dict(entry)
    return {}


def wait_ready(emu: Emulator, namespace: str, name: str, timeout: float = 30.0) -> dict[str, Any]:
    """Play the Deployment controller until the resource reports Ready=True for its generation."""

    def ready() -> dict[str, Any] | None:
        emu.finish_rollouts(namespace)
        resource = emu.get("MultitenantDicomServer", namespace, name)
        ready = condition(resource, "Ready")
        assert resource is not None
        generation = resource["metadata"].get("generation")
        if ready.get("status") == "True" and ready.get("observedGeneration") == generation:
            return resource
        return None

    return wait_for(ready, timeout, interval=0.2, what=f"{namespace}/{name} Ready")
