"""Shared fixtures: one real Orthanc (with the official plugin loaded) per test session.

Tests that need an Orthanc with other settings start their own with ``local_orthanc``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests
from local_orthanc import LocalOrthanc, OrthancHandle, provide_orthanc

from tests.helpers.orthanc import OrthancRest
from tests.helpers.plugin import PLUGIN_TENANTS, plugin_config

pytest_plugins = ["tests.helpers.tenants"]


@pytest.fixture(scope="session")
def orthanc() -> Iterator[OrthancHandle]:
    """The session's Orthanc: official plugin loaded with ``PLUGIN_TENANTS``, auth on."""
    handle = provide_orthanc(extra_config=plugin_config(), with_plugin=True)
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def rest(orthanc: OrthancHandle) -> OrthancRest:
    return OrthancRest(orthanc.url, orthanc.username, orthanc.password)


@pytest.fixture(scope="session")
def orthanc_dicom_port(orthanc: OrthancHandle) -> int:
    assert isinstance(orthanc, LocalOrthanc)
    return orthanc.dicom_port


@pytest.fixture(scope="session")
def plugin_ports() -> dict[str, int]:
    """AET -> port of the official plugin's tenant servers in the session Orthanc."""
    return {t["AET"]: t["Port"] for t in PLUGIN_TENANTS}


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session
