"""Results: machine facts, one row per operation with both sides and the ratio, JSON and a table."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


@dataclass
class Row:
    """One operation measured on both sides with the same client."""

    key: str
    title: str
    client: str
    unit: str  # "ms" (lower is better) or "instances/s" (higher is better)
    plugin: float
    ours: float
    target: float | None = None  # ratio ours/plugin: a maximum for ms, a minimum for instances/s
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def lower_is_better(self) -> bool:
        return self.unit == "ms"

    @property
    def ratio(self) -> float:
        return self.ours / self.plugin if self.plugin else 0.0

    @property
    def speedup(self) -> float:
        """How many times better ours is (>1 means ours wins)."""
        if not self.ours or not self.plugin:
            return 0.0
        return self.plugin / self.ours if self.lower_is_better else self.ours / self.plugin

    @property
    def target_met(self) -> bool | None:
        if self.target is None:
            return None
        return self.ratio <= self.target if self.lower_is_better else self.ratio >= self.target

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("key")
        data.update(
            ratio=round(self.ratio, 4),
            speedup=round(self.speedup, 2),
            target_met=self.target_met,
            better="lower" if self.lower_is_better else "higher",
        )
        return data


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info(orthanc_version: str, dcmtk_version: str) -> dict[str, Any]:
    import pydicom
    import pynetdicom
    import requests

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "kernel": platform.release(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "pynetdicom": pynetdicom.__version__,
        "pydicom": pydicom.__version__,
        "requests": requests.__version__,
        "orthanc": orthanc_version,
        "dcmtk": dcmtk_version,
        "git_commit": commit,
    }


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:,.1f} ms"
    return f"{value:,.1f}/s"


def table(rows: list[Row]) -> str:
    header = ("operation", "client", "plugin", "ours", "ours/plugin", "speed-up", "target", "met")
    lines = [header]
    for row in rows:
        if row.target is None:
            target = ""
        else:
            target = f"<= {row.target:g}" if row.lower_is_better else f">= {row.target:g}"
        met = {True: "yes", False: "NO", None: ""}[row.target_met]
        lines.append(
            (
                row.title,
                row.client,
                _fmt(row.plugin, row.unit),
                _fmt(row.ours, row.unit),
                f"{row.ratio:.3f}",
                f"{row.speedup:.1f}x",
                target,
                met,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append(
            "  ".join(
                cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i]) for i, cell in enumerate(line)
            )
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
