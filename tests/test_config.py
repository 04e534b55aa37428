"""Configuration: the plugin's keys and defaults, and one clear error naming key and server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tenant_server.config import ConfigError, parse_settings


def config(*servers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "Orthanc": {"Url": "http://orthanc:8042"},
        "MultitenantDicom": {"Servers": list(servers)},
        **extra,
    }


def test_plugin_defaults() -> None:
    settings = parse_settings(config({"AET": "HELLO", "Port": 4343, "Labels": ["hello"]}), env={})
    (server,) = settings.servers
    assert server.constraint == "All"
    assert server.store_levels == ("Study", "Series", "Instance")
    assert dict(settings.dicom.always_allow) == {
        "Echo": True,
        "Find": False,
        "Move": False,
        "Get": False,
        "Store": True,
    }
    assert server.store_isolation == "Strict"


def test_modalities_in_both_forms_and_env_overrides() -> None:
    raw = config(
        {"AET": "A", "Port": 1, "Labels": ["a"], "LabelsStoreLevels": ["patients", "Image"]},
        DicomModalities={
            "ct": ["CT1", "10.0.0.5", 104],
            "pacs": {"AET": "PACS", "Host": "pacs", "Port": "11112", "AllowStore": False},
        },
    )
    settings = parse_settings(raw, env={"ORTHANC_URL": "https://o:1/", "ORTHANC_PASSWORD": "s3cret"})
    assert settings.orthanc.url == "https://o:1" and settings.orthanc.password == "s3cret"
    assert "s3cret" not in repr(settings)
    assert settings.servers[0].store_levels == ("Patient", "Instance")
    pacs = next(m for m in settings.dicom.modalities if m.name == "pacs")
    assert pacs.port == 11112 and "Store" not in pacs.permissions


@pytest.mark.parametrize(
    ("servers", "message"),
    [
        (
            [{"AET": "A", "Port": 1, "Labels": ["a"]}, {"AET": "a", "Port": 2, "Labels": ["a"]}],
            "'a' is used by two servers",
        ),
        (
            [{"AET": "A", "Port": 1, "Labels": ["a"]}, {"AET": "B", "Port": 1, "Labels": ["b"]}],
            '"Port" 1 of server "B" is already used by server "A"',
        ),
        ([{"AET": "WAY_TOO_LONG_AETITLE", "Port": 1, "Labels": ["a"]}], '"AET"'),
        ([{"AET": "A", "Port": 1, "Labels": ["bad label"]}], '"Labels" of server "A" has an invalid label'),
        (
            [{"AET": "A", "Port": 1, "Labels": ["a"], "LabelsConstraint": "Some"}],
            '"LabelsConstraint" of server "A"',
        ),
        (
            [{"AET": "A", "Port": 1, "Labels": ["a"], "LabelsStoreLevels": ["Frame"]}],
            '"LabelsStoreLevels" of server "A"',
        ),
        (
            [{"AET": "A", "Port": 70000, "Labels": ["a"]}],
            '"Port" of server "A" must be an integer from 1 to 65535',
        ),
        ([{"AET": "A", "Port": 1, "Labels": []}], '"Labels" of server "A" is empty'),
        ([{"AET": "A", "Port": 1}], '"Labels" of server "A" is required'),
        (
            [{"AET": "A", "Port": 1, "Labels": ["a"], "AllowedMoveDestinations": ["nowhere"]}],
            "'nowhere', which is not in \"DicomModalities\"",
        ),
    ],
)
def test_errors_name_the_key_and_the_server(servers: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_settings(config(*servers), env={})
    assert message in str(error.value)


def test_empty_labels_need_an_explicit_opt_in() -> None:
    settings = parse_settings(
        config({"AET": "ALL", "Port": 1, "Labels": [], "AllowEmptyLabels": True}), env={}
    )
    assert settings.servers[0].labels == ()


def test_cli_refuses_to_start_half_the_tenants(tmp_path: Path) -> None:
    path = tmp_path / "orthanc.json"
    path.write_text(
        "// Orthanc allows comments\n"
        + json.dumps(
            config(
                {"AET": "GOOD", "Port": 4999, "Labels": ["g"]}, {"AET": "BAD", "Port": 4999, "Labels": ["b"]}
            )
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "tenant_server", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert 'configuration error: "Port" 4999 of server "BAD"' in result.stderr
    unknown = subprocess.run(
        [sys.executable, "-m", "tenant_server", "--config", str(tmp_path / "missing.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unknown.returncode == 2 and "cannot read configuration file" in unknown.stderr
