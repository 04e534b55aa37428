"""Fixtures of the production tests: a test PKI and a label of their own per test."""

from __future__ import annotations

import secrets

import pytest

from tests.production.support import Pki, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def label() -> str:
    """A fresh label: what a test stores is told apart from the rest of the session Orthanc."""
    return "prod_" + secrets.token_hex(4)
