"""Client floors: what the benchmark's own clients reach against a server that does no work.

A tenant server cannot answer faster than its client can ask and read. These runs put the
same stock clients in front of a pynetdicom SCP (in its own process, with the tenant
server's socket tuning) that acknowledges every C-STORE without storing anything and
answers a C-FIND with prepared answers written by the tenant server's fastest path (no
Orthanc behind it). A target ratio below ``floor / plugin`` cannot be met by any server
with that client on that machine; docs/performance.md uses these figures.

``python -m bench.floor PORT ANSWERS`` is the SCP; ``measure()`` starts it and runs the clients.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from local_orthanc.server import free_port
from pydicom import datadict
from pydicom.tag import BaseTag, Tag
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
    Verification,
)

from bench import clients, dcmtk
from bench.report import median
from bench.stack import _wait_port
from bench.synth import FIND_DATE
from tenant_server.answer_stream import DirectAnswers
from tenant_server.identifiers import Answer
from tenant_server.sockets import TUNING_HANDLERS

AET = "FLOOR"


def prepared_answers(count: int) -> list[Answer]:
    """Answers shaped like the benchmark's 1,000-study query asks for."""
    values = {
        "QueryRetrieveLevel": "STUDY",
        "RetrieveAETitle": AET,
        "StudyDate": FIND_DATE,
        "StudyTime": "120000",
        "StudyDescription": "Floor study",
        "PatientBirthDate": "19700101",
        "ModalitiesInStudy": "CT",
        "NumberOfStudyRelatedSeries": "1",
        "NumberOfStudyRelatedInstances": "3",
        "SOPClassesInStudy": "1.2.840.10008.5.1.4.1.1.2",
    }
    vrs = {"QueryRetrieveLevel": "CS", "RetrieveAETitle": "AE", "StudyDate": "DA", "StudyTime": "TM"}
    answers = []
    for n in range(count):
        row = {**values, "PatientName": f"Floor^{n}", "PatientID": f"F{n}", "AccessionNumber": f"A{n}"}
        row["StudyInstanceUID"] = f"1.2.826.0.1.3680043.8.498.{n + 1}"
        elements: list[tuple[BaseTag, str, str | None]] = [
            (Tag(k), vrs.get(k) or datadict.dictionary_VR(Tag(k)), v) for k, v in row.items()
        ]
        answers.append(Answer(None, elements))
    return answers


def serve(port: int, answer_count: int) -> None:
    answers = prepared_answers(answer_count)

    def on_find(event: evt.Event) -> Iterator[Any]:
        writer = DirectAnswers.for_event(event)
        if writer is not None:
            writer.send(answers, lambda: False)
        yield 0x0000, None

    ae = AE(ae_title=AET)
    ae.supported_contexts = AllStoragePresentationContexts
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    ae.add_supported_context(Verification)
    handlers: list[Any] = [
        *TUNING_HANDLERS,
        (evt.EVT_C_STORE, lambda event: 0x0000),
        (evt.EVT_C_FIND, on_find),
    ]
    ae.start_server(("127.0.0.1", port), evt_handlers=handlers)  # blocks until killed


def _wait_echo(port: int, timeout: float = 20.0) -> None:
    """Until the SCP answers a C-ECHO: a listening port is not yet a serving AE."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            assoc = clients.associate(AET, port, Verification)
            assoc.send_c_echo()
            assoc.release()
            return
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def measure(store_files: list[bytes], answer_count: int, runs: int, with_dcmtk: bool) -> dict[str, Any]:
    """C-STORE (1 and 4 associations) and a C-FIND of ``answer_count`` answers against the floor SCP."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.floor", str(port), str(answer_count)])
    try:
        _wait_port(port)
        _wait_echo(port)
        result: dict[str, Any] = {}
        for associations in (1, 4):
            run = clients.store_parallel(AET, port, store_files, associations)
            result[f"cstore_{associations}_per_s"] = round(run.per_second, 1)
        query = clients.study_query(date=FIND_DATE, extra=True)
        (times,) = clients.find_interleaved([(AET, port)], [query] * (runs + 1), warmup=1)
        result["cfind_many_pynetdicom_ms"] = round(median(times.seconds) * 1000, 1)
        if with_dcmtk:
            result["cfind_many_findscu_ms"] = round(
                median(dcmtk.find_wall(AET, port, FIND_DATE, True, runs)) * 1000, 1
            )
        return result
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
