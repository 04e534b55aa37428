"""C-STORE: stored as received, labelled, idempotent, and safe against a hostile tenant."""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import pynetdicom.association
import pytest
from local_orthanc import OrthancHandle, dcmtk, provide_orthanc
from local_orthanc.server import free_port
from local_orthanc.synthetic import StudySpec, make_instance, study_instances
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from tenant_server.orthanc import orthanc_id
from tests.helpers.dicom import LEVELS, find, identifier, ids_of, move, store, values
from tests.helpers.faults import fault_proxy
from tests.helpers.orthanc import OrthancRest
from tests.helpers.tenants import StorageScp, run_tenants, tenant_config


def label_state(rest: OrthancRest, ds: Dataset) -> dict[str, list[str] | None]:
    return {
        level: rest.labels(level, oid) if rest.exists(level, oid) else None
        for level, oid in ids_of(ds).items()
    }


def test_stored_byte_for_byte_and_labelled(ours: dict[str, int], rest: OrthancRest) -> None:
    spec = StudySpec()
    datasets = list(study_instances(spec))
    assert [r.Status for r in store(ours["OURS_A"], "OURS_A", datasets)] == [0, 0]
    for ds in datasets:
        assert label_state(rest, ds) == {level: ["compat_a"] for level in LEVELS}
        stored = dcmread(
            BytesIO(rest.session.get(f"{rest.url}/instances/{ids_of(ds)['Instance']}/file").content)
        )
        assert stored.PixelData == ds.PixelData and stored.PatientName == ds.PatientName
        assert stored.file_meta.SourceApplicationEntityTitle == "TESTSCU"  # who sent it


# dcmtk storescu option that proposes each file's own transfer syntax
PROPOSE = {
    "1.2.840.10008.1.2": "-xi",
    "1.2.840.10008.1.2.1": "-xe",
    "1.2.840.10008.1.2.1.99": "-xd",
    "1.2.840.10008.1.2.4.50": "-xy",
    "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.91": "-xw",
    "1.2.840.10008.1.2.5": "-xr",
}


@pytest.mark.parametrize(
    "name",
    [
        "CT_small.dcm",
        "MR_small_implicit.dcm",
        "image_dfl.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "JPEG-lossy.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "JPEG2000.dcm",
        "MR_small_RLE.dcm",
    ],
)
def test_dcmtk_storescu_transfer_syntaxes(
    ours: dict[str, int], rest: OrthancRest, tmp_path: Path, name: str
) -> None:
    """Files are relabelled for this test (fresh UIDs) and must arrive in their own transfer syntax."""
    source = dcmread(get_testdata_file(name, download=False))
    source.PatientID = "TS" + generate_uid()[-8:]
    source.StudyInstanceUID, source.SeriesInstanceUID = generate_uid(), generate_uid()
    source.SOPInstanceUID = source.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    path = tmp_path / name
    source.save_as(path)
    option = PROPOSE[str(source.file_meta.TransferSyntaxUID)]
    result = subprocess.run(
        [dcmtk.tool("storescu"), option, "-aec", "OURS_A", "127.0.0.1", str(ours["OURS_A"]), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    instance = ids_of(source)["Instance"]
    assert rest.labels("Instance", instance) == ["compat_a"]
    metadata = rest.get(f"/instances/{instance}/metadata?expand")
    assert metadata["TransferSyntax"] == str(source.file_meta.TransferSyntaxUID)
    stored = dcmread(BytesIO(rest.session.get(f"{rest.url}/instances/{instance}/file").content))
    assert stored.PixelData == source.PixelData


def test_duplicate_of_own_instance_is_success(ours: dict[str, int], rest: OrthancRest) -> None:
    ds = next(study_instances(StudySpec()))
    assert store(ours["OURS_A"], "OURS_A", [ds])[0].Status == 0
    assert store(ours["OURS_A"], "OURS_A", [ds])[0].Status == 0
    assert label_state(rest, ds)["Instance"] == ["compat_a"]


def _victim_study(ours: dict[str, int]) -> tuple[StudySpec, list[Dataset]]:
    spec = StudySpec(patient_name="Victim^Alice")
    datasets = list(study_instances(spec))
    assert all(r.Status == 0 for r in store(ours["OURS_A"], "OURS_A", datasets))
    return spec, datasets


def _forged(spec: StudySpec) -> Dataset:
    """A new instance claiming the victim's PatientID and StudyInstanceUID."""
    return make_instance(
        StudySpec(patient_id=spec.patient_id, study_uid=spec.study_uid), generate_uid(), 9, 1
    )


@pytest.mark.parametrize("attack", ["forged", "copy"])
def test_hostile_tenant_cannot_join_anothers_study(
    ours: dict[str, int], rest: OrthancRest, move_destination: StorageScp, attack: str
) -> None:
    spec, victim = _victim_study(ours)
    before = [label_state(rest, ds) for ds in victim]
    payload = _forged(spec) if attack == "forged" else victim[0]
    response = store(ours["OURS_B"], "OURS_B", [payload])[0]
    assert response.Status == 0x0124
    assert response.ErrorComment.startswith("isolation: the ")  # the reason reaches the modality
    assert [label_state(rest, ds) for ds in victim] == before  # the victim's labels are untouched
    if attack == "forged":
        assert not rest.exists("Instance", ids_of(payload)["Instance"])  # nothing written
    seen, _ = find(ours["OURS_B"], "OURS_B", identifier("STUDY", StudyInstanceUID=spec.study_uid))
    assert seen == []
    move_destination.clear()
    move(ours["OURS_B"], "OURS_B", identifier("STUDY", StudyInstanceUID=spec.study_uid), "DEST")
    assert move_destination.sop_uids() == set()


@pytest.mark.plugin
@pytest.mark.parametrize("attack", ["forged", "copy"])
def test_the_same_attacks_succeed_against_the_official_plugin(
    plugin_ports: dict[str, int], rest: OrthancRest, attack: str
) -> None:
    """Why StoreIsolation exists: the plugin labels the victim's study for the attacker."""
    spec = StudySpec(patient_name="Victim^Bob")
    victim = list(study_instances(spec))
    assert all(r.Status == 0 for r in store(plugin_ports["PLUGIN_A"], "PLUGIN_A", victim))
    payload = _forged(spec) if attack == "forged" else victim[0]
    assert store(plugin_ports["PLUGIN_B"], "PLUGIN_B", [payload])[0].Status == 0x0000
    assert rest.labels("Study", ids_of(victim[0])["Study"]) == ["compat_a", "compat_b"]
    seen, _ = find(plugin_ports["PLUGIN_B"], "PLUGIN_B", identifier("STUDY", StudyInstanceUID=spec.study_uid))
    assert values(seen, "StudyInstanceUID") == {spec.study_uid}


def test_isolation_can_be_switched_off_for_migrations(
    orthanc: OrthancHandle, ours: dict[str, int], rest: OrthancRest
) -> None:
    _, victim = _victim_study(ours)
    port = free_port()
    config = tenant_config(
        orthanc, [{"AET": "MIGRATE", "Port": port, "Labels": ["compat_b"], "StoreIsolation": "Off"}]
    )
    with run_tenants(config):
        assert store(port, "MIGRATE", [victim[0]])[0].Status == 0
    assert rest.labels("Study", ids_of(victim[0])["Study"]) == ["compat_a", "compat_b"]


def _store_with_payload(
    port: int, ds: Dataset, payload: Callable[[bytes], bytes], monkeypatch: pytest.MonkeyPatch
) -> int:
    """C-STORE ``ds`` but put ``payload(encoded)`` on the wire: a command and data set that disagree,
    which no honest SCU sends. The association must stay usable afterwards."""
    real_encode = pynetdicom.association.encode
    with monkeypatch.context() as patch:
        patch.setattr(pynetdicom.association, "encode", lambda *a, **k: payload(real_encode(*a, **k)))
        ae = AE(ae_title="RAWSCU")
        ae.add_requested_context(CTImageStorage)
        assoc = ae.associate("127.0.0.1", port, ae_title="OURS_A")
        assert assoc.is_established
        code = int(assoc.send_c_store(ds).Status)
    assert assoc.send_c_store(make_instance(StudySpec(), generate_uid(), 1, 1)).Status == 0
    assoc.release()
    return code


def test_mismatched_uids_and_garbage_are_refused(
    ours: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = make_instance(StudySpec(), generate_uid(), 1, 1)
    uid = str(ds.SOPInstanceUID).encode()
    forged = str(generate_uid()).encode()[: len(uid)].ljust(len(uid), b"1")

    def swap(data: bytes) -> bytes:
        """The same bytes with another SOP Instance UID of the same length in the data set."""
        return data.replace(uid, forged)

    assert _store_with_payload(ours["OURS_A"], ds, swap, monkeypatch) == 0xA900
    assert (
        _store_with_payload(ours["OURS_A"], ds, lambda data: b"\x08\x00\x16\x00garbage", monkeypatch)
        == 0xC000
    )


def test_parallel_stores_into_one_new_study_end_fully_labelled(
    ours: dict[str, int], rest: OrthancRest
) -> None:
    spec = StudySpec()
    batches = [[make_instance(spec, generate_uid(), n, i) for i in range(1, 4)] for n in range(1, 5)]
    statuses: list[int] = []

    def send(batch: list[Dataset]) -> None:
        statuses.extend(int(r.Status) for r in store(ours["OURS_A"], "OURS_A", batch))

    threads = [threading.Thread(target=send, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert statuses == [0] * 12
    assert len(rest.find("Study", {"StudyInstanceUID": spec.study_uid})) == 1
    for ds in (ds for batch in batches for ds in batch):
        assert label_state(rest, ds) == {level: ["compat_a"] for level in LEVELS}


def test_labelling_failure_leaves_nothing_behind(orthanc: OrthancHandle, rest: OrthancRest) -> None:
    port = free_port()
    with fault_proxy(orthanc.url) as proxy:
        config = tenant_config(orthanc, [{"AET": "FAULTY", "Port": port, "Labels": ["compat_a"]}])
        config["Orthanc"]["Url"] = proxy.url
        with run_tenants(config):
            proxy.mode = "refuse-labels"
            ds = next(study_instances(StudySpec()))
            assert store(port, "FAULTY", [ds])[0].Status == 0xA700
            assert not rest.exists("Instance", ids_of(ds)["Instance"])
            proxy.mode = "down"
            assert store(port, "FAULTY", [ds])[0].Status == 0xA700
            proxy.mode = "pass"  # Orthanc is back: the modality's retry succeeds
            assert store(port, "FAULTY", [ds])[0].Status == 0
            assert label_state(rest, ds) == {level: ["compat_a"] for level in LEVELS}


def test_instance_left_unlabelled_by_an_outage_does_not_block_the_retry(
    orthanc: OrthancHandle, rest: OrthancRest
) -> None:
    """Labelling and the undo both fail: the unlabelled instance must not make the new study look
    like another tenant's, so the modality's retry (or any later store) succeeds and nothing
    unacknowledged stays behind."""
    port = free_port()
    with fault_proxy(orthanc.url) as proxy:
        config = tenant_config(orthanc, [{"AET": "HALFWAY", "Port": port, "Labels": ["compat_a"]}])
        config["Orthanc"]["Url"] = proxy.url
        with run_tenants(config):
            retried, abandoned, other = (next(study_instances(StudySpec())) for _ in range(3))
            proxy.mode = "refuse-labels-and-deletes"
            assert [r.Status for r in store(port, "HALFWAY", [retried, abandoned])] == [0xA700, 0xA700]
            assert rest.exists("Instance", ids_of(retried)["Instance"])  # stored, unlabelled
            assert label_state(rest, abandoned)["Study"] == []
            proxy.mode = "pass"
            assert store(port, "HALFWAY", [retried])[0].Status == 0  # within the strict guard's wait
            assert label_state(rest, retried) == {level: ["compat_a"] for level in LEVELS}
            assert not rest.exists("Instance", ids_of(abandoned)["Instance"])  # removed, never acknowledged
            assert store(port, "HALFWAY", [other])[0].Status == 0


@pytest.mark.parametrize(
    "post_delays",
    [
        pytest.param({"RACE_A": 0.5, "RACE_B": 0.5}, id="stores land together"),
        pytest.param({"RACE_A": 0.0, "RACE_B": 0.5}, id="B's store lands after A's is done"),
    ],
)
def test_two_tenants_creating_one_study_at_once_never_both_get_it(
    orthanc: OrthancHandle, rest: OrthancRest, post_delays: dict[str, float]
) -> None:
    """Both find the study absent, then their stores land (together, or one after the other
    is acknowledged): at most one is acknowledged, and the study carries only its label."""
    ports = {"RACE_A": free_port(), "RACE_B": free_port()}
    spec = StudySpec()
    mine = {aet: make_instance(spec, generate_uid(), 1, n) for n, aet in enumerate(ports, start=1)}
    statuses: dict[str, int] = {}
    with fault_proxy(orthanc.url) as proxy_a, fault_proxy(orthanc.url) as proxy_b:
        proxies = {"RACE_A": proxy_a, "RACE_B": proxy_b}
        servers = []
        for aet, port in ports.items():
            config = tenant_config(orthanc, [{"AET": aet, "Port": port, "Labels": [aet.lower()]}])
            config["Orthanc"]["Url"] = proxies[aet].url
            servers.append(config)
        with run_tenants(servers[0]), run_tenants(servers[1]):
            for aet, proxy in proxies.items():
                proxy.method_delays = {"POST": post_delays[aet]}

            def send(aet: str) -> None:
                statuses[aet] = int(store(ports[aet], aet, [mine[aet]])[0].Status)

            threads = [threading.Thread(target=send, args=(aet,)) for aet in ports]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
    accepted = [aet for aet, code in statuses.items() if code == 0]
    assert len(statuses) == 2 and len(accepted) <= 1, statuses
    assert all(code in (0, 0x0124) for code in statuses.values()), statuses
    if post_delays["RACE_A"] < post_delays["RACE_B"]:
        assert accepted == ["RACE_A"], statuses  # the first one done keeps the study
    study = ids_of(mine["RACE_A"])["Study"]
    labels = rest.labels("Study", study) if rest.exists("Study", study) else []
    assert labels == [aet.lower() for aet in accepted]
    for aet, ds in mine.items():
        assert rest.exists("Instance", ids_of(ds)["Instance"]) == (aet in accepted), aet


def test_store_levels_follow_the_configuration(orthanc: OrthancHandle, rest: OrthancRest) -> None:
    port = free_port()
    config = tenant_config(
        orthanc,
        [
            {
                "AET": "LEVELS",
                "Port": port,
                "Labels": ["lvl_x", "lvl_y"],
                "LabelsStoreLevels": ["Patient", "Study"],
            }
        ],
    )
    ds = next(study_instances(StudySpec()))
    with run_tenants(config):
        assert store(port, "LEVELS", [ds])[0].Status == 0
    assert label_state(rest, ds) == {"Study": ["lvl_x", "lvl_y"], "Series": [], "Instance": []}
    assert rest.labels("Patient", orthanc_id(str(ds.PatientID))) == ["lvl_x", "lvl_y"]


def test_overwriting_orthanc_and_sender_metadata() -> None:
    """With OverwriteInstances, a copy would replace the victim's instance: it is checked
    before storing. Declared user metadata records who sent each instance."""
    extra = {
        "OverwriteInstances": True,
        "UserMetadata": {"SenderAet": 1024, "SenderIp": 1025, "TenantAet": 1026},
    }
    orthanc = provide_orthanc(extra_config=extra)
    try:
        rest = OrthancRest(orthanc.url, orthanc.username, orthanc.password)
        ports = {"VICTIM": free_port(), "THIEF": free_port()}
        servers = [{"AET": aet, "Port": port, "Labels": [aet.lower()]} for aet, port in ports.items()]
        with run_tenants(tenant_config(orthanc, servers)):
            ds = next(study_instances(StudySpec()))
            assert store(ports["VICTIM"], "VICTIM", [ds], calling="MODALITY1")[0].Status == 0
            instance = ids_of(ds)["Instance"]
            metadata = rest.get(f"/instances/{instance}/metadata?expand")
            assert (metadata["SenderAet"], metadata["SenderIp"], metadata["TenantAet"]) == (
                "MODALITY1",
                "127.0.0.1",
                "VICTIM",
            )
            assert store(ports["THIEF"], "THIEF", [ds])[0].Status == 0x0124
            assert rest.labels("Instance", instance) == ["victim"]
            assert rest.get(f"/instances/{instance}/metadata?expand")["TenantAet"] == "VICTIM"  # not replaced
    finally:
        orthanc.stop()
