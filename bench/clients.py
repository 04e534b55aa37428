"""The benchmark's DICOM and REST clients: stock pynetdicom (default ``AE()``), plain requests.

Nothing here tunes sockets: both tenant servers get byte-identical requests from the same
unmodified client, so any difference comes from the server side.
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from typing import Any

import requests
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelMove,
)

logging.getLogger("pynetdicom").setLevel(logging.ERROR)

# Return keys of a typical study-level query, and the extra ones the query-retrieve issue
# asks for (the plugin never returns them; our server computes them within the tenant's view).
BASIC_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "StudyDate", "StudyTime", "StudyDescription")
EXTRA_KEYS = (
    "AccessionNumber",
    "ModalitiesInStudy",
    "NumberOfStudyRelatedSeries",
    "NumberOfStudyRelatedInstances",
    "SOPClassesInStudy",
)


def study_query(uid: str = "", date: str = "", extra: bool = False) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    for keyword in BASIC_KEYS + (EXTRA_KEYS if extra else ()):
        setattr(ds, keyword, "")
    ds.StudyInstanceUID = uid
    if date:
        ds.StudyDate = date
    return ds


def associate(aet: str, port: int, *contexts: str) -> Association:
    ae = AE()
    for context in contexts:
        ae.add_requested_context(context)
    assoc = ae.associate("127.0.0.1", port, ae_title=aet)
    if not assoc.is_established:
        raise RuntimeError(f"association with {aet} on port {port} failed")
    return assoc


def _find(assoc: Association, query: Dataset) -> tuple[int, int]:
    """One C-FIND to its final response: (matches, final status)."""
    matches = 0
    final = -1
    for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
        code = int(status.Status) if status else -1
        if code in (0xFF00, 0xFF01) and identifier is not None:
            matches += 1
        else:
            final = code
    return matches, final


@dataclass
class FindTimes:
    seconds: list[float]
    matches: list[int]
    statuses: list[int]


def find_repeatedly(aet: str, port: int, queries: list[Dataset], warmup: int = 2) -> FindTimes:
    """Each query on one open association; the first ``warmup`` are not timed."""
    return find_interleaved([(aet, port)], queries, warmup)[0]


def find_interleaved(
    endpoints: list[tuple[str, int]], queries: list[Dataset], warmup: int = 2
) -> list[FindTimes]:
    """Each query sent to every endpoint in turn, one open association each.

    Interleaving puts both servers under the same background load (the machine may be
    shared), so their ratio stays meaningful even when absolute times drift.
    """
    assocs = [associate(aet, port, StudyRootQueryRetrieveInformationModelFind) for aet, port in endpoints]
    results = [FindTimes([], [], []) for _ in endpoints]
    try:
        for index, query in enumerate(queries):
            for assoc, times in zip(assocs, results, strict=True):
                start = time.perf_counter()
                matches, final = _find(assoc, query)
                elapsed = time.perf_counter() - start
                if index >= warmup:
                    times.seconds.append(elapsed)
                    times.matches.append(matches)
                    times.statuses.append(final)
    finally:
        for assoc in assocs:
            assoc.release()
    return results


# --- C-STORE -------------------------------------------------------------------------


def _store_worker(aet: str, port: int, blobs: list[bytes]) -> tuple[float, float, int, int]:
    """One association in its own process: (first send, last answer, successes, failures)."""
    logging.getLogger("pynetdicom").setLevel(logging.ERROR)
    datasets = [dcmread(BytesIO(blob)) for blob in blobs]
    assoc = associate(aet, port, CTImageStorage)
    ok = failed = 0
    start = time.perf_counter()
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            if status and int(status.Status) == 0x0000:
                ok += 1
            else:
                failed += 1
        end = time.perf_counter()
    finally:
        assoc.release()
    return start, end, ok, failed


@dataclass
class StoreRun:
    instances: int
    seconds: float
    ok: int
    failed: int

    @property
    def per_second(self) -> float:
        """Successful stores per second."""
        return self.ok / self.seconds if self.seconds else 0.0


def store_parallel(aet: str, port: int, blobs: list[bytes], associations: int) -> StoreRun:
    """``associations`` client processes (one association each) share the files.

    Time runs from the first process's first C-STORE to the last one's last answer
    (``perf_counter`` is the system-wide monotonic clock on Linux), so process start-up and
    file parsing are not counted.
    """
    chunks = [blobs[i::associations] for i in range(associations)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(associations, mp_context=context) as pool:
        results = list(pool.map(_store_worker, [aet] * associations, [port] * associations, chunks))
    start = min(r[0] for r in results)
    end = max(r[1] for r in results)
    return StoreRun(len(blobs), end - start, sum(r[2] for r in results), sum(r[3] for r in results))


def rest_post(url: str, auth: tuple[str, str], blobs: list[bytes], threads: int) -> StoreRun:
    """The same kind of files posted straight to ``POST /instances`` from this one process."""
    chunks = [blobs[i::threads] for i in range(threads)]

    def post_all(chunk: list[bytes]) -> tuple[int, int]:
        ok = failed = 0
        with requests.Session() as session:
            session.auth = auth
            for blob in chunk:
                reply = session.post(
                    url + "/instances", data=blob, headers={"Content-Type": "application/dicom"}, timeout=60
                )
                if reply.status_code == 200:
                    ok += 1
                else:
                    failed += 1
        return ok, failed

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(post_all, chunks))
    seconds = time.perf_counter() - start
    return StoreRun(len(blobs), seconds, sum(r[0] for r in results), sum(r[1] for r in results))


# --- C-MOVE --------------------------------------------------------------------------


@dataclass
class MoveRun:
    studies: int
    seconds: float
    completed: int
    failed: int
    statuses: list[int]
    pending: int


def move_studies(aet: str, port: int, study_uids: list[str], destination: str) -> MoveRun:
    """One study-level C-MOVE per study, one after the other on one association."""
    assoc = associate(aet, port, StudyRootQueryRetrieveInformationModelMove)
    completed = failed = pending = 0
    statuses = []
    start = time.perf_counter()
    try:
        for uid in study_uids:
            query = Dataset()
            query.QueryRetrieveLevel = "STUDY"
            query.StudyInstanceUID = uid
            final: Any = None
            for status, _ in assoc.send_c_move(
                query, destination, StudyRootQueryRetrieveInformationModelMove
            ):
                if status and int(status.Status) in (0xFF00, 0xFF01):
                    pending += 1
                else:
                    final = status
            code = int(final.Status) if final else -1
            statuses.append(code)
            completed += int(final.get("NumberOfCompletedSuboperations", 0) or 0) if final else 0
            failed += int(final.get("NumberOfFailedSuboperations", 0) or 0) if final else 0
        seconds = time.perf_counter() - start
    finally:
        assoc.release()
    return MoveRun(len(study_uids), seconds, completed, failed, statuses, pending)
