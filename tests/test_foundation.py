"""The foundation: a real Orthanc with labels, authentication and the official plugin."""

from __future__ import annotations

import requests
from local_orthanc import OrthancHandle
from local_orthanc.synthetic import StudySpec, study_instances, to_bytes
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from tests.helpers.orthanc import OrthancRest
from tests.helpers.plugin import PLUGIN_TENANTS


def test_orthanc_has_labels_and_requires_credentials(orthanc: OrthancHandle, rest: OrthancRest) -> None:
    system = rest.get("/system")
    assert system["HasLabels"] is True
    major, minor = (int(part) for part in system["Version"].split(".")[:2])
    assert (major, minor) >= (1, 12)
    assert requests.get(orthanc.url + "/system", timeout=10).status_code == 401


def test_labels_filter_tools_find(rest: OrthancRest) -> None:
    spec = StudySpec()
    ids = {}
    for ds in study_instances(spec):
        ids = rest.store_with_labels(to_bytes(ds), ["foundation_x"])
    found = rest.find("Study", {"StudyInstanceUID": spec.study_uid}, Labels=["foundation_x"])
    assert found == [ids["Study"]]
    assert rest.find("Study", {"StudyInstanceUID": spec.study_uid}, Labels=["foundation_y"]) == []


def test_official_plugin_serves_its_tenants(rest: OrthancRest) -> None:
    assert "multitenant-dicom" in rest.get("/plugins")
    ae = AE(ae_title="FOUNDATION")
    ae.add_requested_context(Verification)
    for tenant in PLUGIN_TENANTS:
        assoc = ae.associate("127.0.0.1", tenant["Port"], ae_title=tenant["AET"])
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
