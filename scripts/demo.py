"""The demo behind ``scripts/demo``: real Orthanc, sample data with labels, real tenant servers."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
from local_orthanc import provide_orthanc
from local_orthanc.synthetic import StudySpec, study_instances, to_bytes

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = {
    "hello": [
        StudySpec(patient_id="HELLO-1", patient_name="Hello^Alice", study_description="Hello chest CT")
    ],
    "world": [
        StudySpec(
            patient_id="WORLD-1", patient_name="World^Bob", modality="MR", study_description="World brain MR"
        ),
        StudySpec(
            patient_id="HELLO-1", patient_name="Hello^Alice", study_description="Shared patient, other tenant"
        ),
    ],
}


def load_samples(url: str, auth: tuple[str, str]) -> None:
    """Store the sample studies and label them as each tenant's C-STORE would."""
    with requests.Session() as session:
        session.auth = auth
        for label, studies in SAMPLES.items():
            for spec in studies:
                for ds in study_instances(spec):
                    answer = session.post(f"{url}/instances", data=to_bytes(ds), timeout=30).json()
                    for route, key in (
                        ("studies", "ParentStudy"),
                        ("series", "ParentSeries"),
                        ("instances", "ID"),
                    ):
                        session.put(
                            f"{url}/{route}/{answer[key]}/labels/{label}", timeout=30
                        ).raise_for_status()


def instructions(hello_study: str) -> str:
    return f"""
Tenant servers are up (examples/orthanc.json): HELLO on port 4343 (label hello), WORLD on 4344 (label world).
Try, from another terminal (dcmtk):

  echoscu -aec HELLO 127.0.0.1 4343
  findscu -S -aec HELLO -k QueryRetrieveLevel=STUDY -k StudyInstanceUID -k PatientName -k ModalitiesInStudy -k NumberOfStudyRelatedInstances 127.0.0.1 4343
  findscu -S -aec WORLD -k QueryRetrieveLevel=STUDY -k StudyInstanceUID -k PatientName 127.0.0.1 4344
  findscu -S -aec HELLO -k QueryRetrieveLevel=IMAGE -k StudyInstanceUID={hello_study} -k SOPInstanceUID -k SOPClassUID 127.0.0.1 4343
  storescu -aec HELLO 127.0.0.1 4343 some-file.dcm
  storescp --fork -aet VIEWER -od /tmp 4242 &   # the C-MOVE destination "viewer"
  movescu -S -aec HELLO -aem VIEWER -k QueryRetrieveLevel=STUDY -k StudyInstanceUID={hello_study} 127.0.0.1 4343
  getscu -S -aec HELLO -od /tmp -k QueryRetrieveLevel=STUDY -k StudyInstanceUID={hello_study} 127.0.0.1 4343

Health and metrics: curl http://127.0.0.1:8080/readyz ; curl http://127.0.0.1:8080/metrics
Ctrl-C stops everything.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default=str(ROOT / "examples" / "orthanc.json"))
    args = parser.parse_args()
    orthanc = provide_orthanc()
    server: subprocess.Popen[bytes] | None = None
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        print(f"Orthanc 1.12 at {orthanc.url} (user {orthanc.username})", flush=True)
        load_samples(orthanc.url, (orthanc.username, orthanc.password))
        env = dict(
            os.environ,
            ORTHANC_URL=orthanc.url,
            ORTHANC_USERNAME=orthanc.username,
            ORTHANC_PASSWORD=orthanc.password,
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "tenant_server", "--config", args.config], env=env, stdout=sys.stdout
        )
        for _ in range(100):
            try:
                if requests.get("http://127.0.0.1:8080/readyz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if server.poll() is not None:
                return server.returncode
            time.sleep(0.1)
        print(instructions(SAMPLES["hello"][0].study_uid), flush=True)
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            server.wait(30)
        orthanc.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
