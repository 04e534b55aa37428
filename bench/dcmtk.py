"""The same operations from dcmtk's command-line clients (findscu, storescu), stock options.

Each run is a new process and a new association, as a script calling dcmtk would do.
``findscu --repeat N`` sends N identical queries on one association, so the per-query
latency is the slope between a run of 1 and a run of N+1 queries (start-up cancels out).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

TOOLS = ("findscu", "storescu")


def available() -> bool:
    return all(shutil.which(tool) for tool in TOOLS)


def version() -> str:
    try:
        out = subprocess.run(["findscu", "--version"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""
    return out.splitlines()[0].strip() if out else ""


def _keys(uid: str = "", date: str = "", extra: bool = False) -> list[str]:
    keys = [
        "QueryRetrieveLevel=STUDY",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "StudyTime",
        "StudyDescription",
        f"StudyInstanceUID={uid}" if uid else "StudyInstanceUID",
        f"StudyDate={date}" if date else "StudyDate",
    ]
    if extra:
        keys += [
            "AccessionNumber",
            "ModalitiesInStudy",
            "NumberOfStudyRelatedSeries",
            "NumberOfStudyRelatedInstances",
            "SOPClassesInStudy",
        ]
    args = []
    for key in keys:
        args += ["-k", key]
    return args


def _run(command: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, check=False, timeout=600)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({result.returncode}): {result.stderr.decode()[-300:]}")
    return elapsed


def find_latency(aet: str, port: int, uid: str, repeat: int, runs: int = 3) -> float:
    """Seconds per C-FIND on an open association: (t[1 + repeat] - t[1]) / repeat, best of ``runs``."""
    base = ["findscu", "-S", "-aec", aet, *_keys(uid=uid), "127.0.0.1", str(port)]
    one = min(_run([*base, "--repeat", "1"]) for _ in range(runs))
    many = min(_run([*base, "--repeat", str(repeat + 1)]) for _ in range(runs))
    return max(many - one, 1e-6) / repeat


def find_wall(aet: str, port: int, date: str, extra: bool, runs: int) -> list[float]:
    """Wall time of whole findscu runs (process, association and every answer)."""
    command = ["findscu", "-S", "-aec", aet, *_keys(date=date, extra=extra), "127.0.0.1", str(port)]
    return [_run(command) for _ in range(runs)]


def store(aet: str, port: int, files: list[Path]) -> float:
    """Wall time of one storescu run sending every file on one association."""
    return _run(["storescu", "-aec", aet, "127.0.0.1", str(port), *map(str, files)])
