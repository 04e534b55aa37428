"""The benchmark command still runs end to end (``python -m bench --quick``).

Benchmarks are not tests: nothing here checks a timing. It only checks that every
operation was measured on both sides, so the command cannot rot between full runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OPERATIONS = {
    "cecho",
    "cfind_uid",
    "cfind_many",
    "cstore_1",
    "cstore_4",
    "cmove",
    "cfind_uid_dcmtk",
    "cfind_many_dcmtk",
    "cstore_1_dcmtk",
}


@pytest.mark.plugin
@pytest.mark.timeout(600)
def test_quick_benchmark_measures_every_operation_on_both_sides(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    data = json.loads(out.read_text())
    operations = data["operations"]
    assert set(operations) >= OPERATIONS, sorted(operations)
    for name, row in operations.items():
        assert row["plugin"] > 0, name
        assert row["ours"] > 0, name
        assert row["ratio"] > 0, name
    for name in ("cstore_1", "cstore_4"):
        assert operations[name]["details"]["rest_post_per_s"] > 0
    assert data["baselines"]["orthanc_push_rest_instances_per_s"] > 0
    floor = data["baselines"]["client_floor"]
    for key in ("cstore_1_per_s", "cstore_4_per_s", "cfind_many_pynetdicom_ms", "cfind_many_findscu_ms"):
        assert floor[key] > 0, key
    memory = data["memory"]
    assert "error" not in memory, memory
    assert memory["stored_ok"] > 0
    assert memory["rss_peak_mib"] > 0
    assert data["meta"]["nproc"] >= 1 and data["meta"]["orthanc"]
