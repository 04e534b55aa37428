"""The Dockerfile, checked without a Docker engine (none runs on these machines)."""

from __future__ import annotations

import json
import shlex
import tomllib
from pathlib import Path
from typing import Any

from kopf import cli as kopf_cli
from mtdicom_operator.crd import DEFAULT_IMAGE, spec_schema

from tests.operator.samples import REPO

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    lines: list[str] = []
    for raw in DOCKERFILE.read_text().splitlines():
        if raw.strip().startswith("#") or not raw.strip():
            continue
        if lines and lines[-1].endswith("\\"):
            lines[-1] = lines[-1][:-1] + " " + raw.strip()
        else:
            lines.append(raw.strip())
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_copies_every_packaged_folder_and_nothing_missing() -> None:
    copied = [shlex.split(args)[:-1] for op, args in instructions() if op == "COPY" and "--from" not in args]
    sources = {source.rstrip("/") for group in copied for source in group}
    for source in sources:
        assert (REPO / source).exists(), source
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    package_dirs = set(project["tool"]["setuptools"]["package-dir"].values())
    assert package_dirs <= sources
    assert project["project"]["readme"] in sources


def test_runs_as_the_numeric_user_the_crd_defaults_to() -> None:
    (user,) = [args for op, args in instructions() if op == "USER"]
    pod_defaults: dict[str, Any] = spec_schema()["properties"]["podSecurityContext"]["properties"]
    uid = pod_defaults["runAsUser"]["default"]
    gid = pod_defaults["runAsGroup"]["default"]
    assert user == f"{uid}:{gid}"
    assert [op for op, _ in instructions()][-1] == "CMD"
    assert instructions()[0] == ("FROM", "python:3.11-slim AS build")


def test_default_command_is_the_standalone_operator() -> None:
    (cmd,) = [args for op, args in instructions() if op == "CMD"]
    argv = json.loads(cmd)  # the exec form is a JSON array
    assert argv[:2] == ["kopf", "run"]
    params = kopf_cli.run.make_context("run", argv[2:]).params
    assert params["standalone"] is True
    assert params["modules"] == ("mtdicom_operator",)
    assert params["liveness_endpoint"] == "http://0.0.0.0:8080/healthz"


def test_image_name_and_context() -> None:
    assert DEFAULT_IMAGE == "ghcr.io/mtdicom/multitenant-dicom:0.1.0"
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)
    for needed in ("operator", "tenant_server", "scripts", "pyproject.toml", "README.md"):
        assert needed not in ignored


def test_builds_from_the_repository_package() -> None:
    runs = [args for op, args in instructions() if op == "RUN"]
    assert any("pip wheel" in run and run.endswith(" .") for run in runs)
    assert Path(REPO / "pyproject.toml").exists()
