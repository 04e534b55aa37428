"""``python -m bench``: the official plugin against our tenant server, one Orthanc, one archive.

Steps: start Orthanc (with the plugin) and our tenant server over the same database; load
a synthetic archive labelled for both tenants; run each operation with the same stock
clients against both; print a table with the ratios and write everything to JSON.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from bench import clients, dcmtk, floor, memory
from bench.archive import Loader
from bench.report import Row, machine_info, median, percentile, table, write_json
from bench.stack import LABEL, Stack
from bench.synth import FIND_DATE, Factory, StudyKeys

DEFAULT_JSON = Path(__file__).parent / "results" / "latest.json"


@dataclass
class Plan:
    studies: int
    scaling: list[int]
    find_set: int  # studies the "many studies" C-FIND returns (1,000 in a full run)
    find_repeat: int
    find_many_runs: int
    store_instances: int
    dcmtk_store_instances: int
    move_studies: int
    move_instances: int
    memory_instances: int
    memory_clients: int
    load_threads: int


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        plan = Plan(
            studies=60,
            scaling=[],
            find_set=40,
            find_repeat=8,
            find_many_runs=2,
            store_instances=16,
            dcmtk_store_instances=10,
            move_studies=2,
            move_instances=5,
            memory_instances=200,
            memory_clients=2,
            load_threads=4,
        )
    else:
        plan = Plan(
            studies=args.studies,
            scaling=[],
            find_set=1000,
            find_repeat=30,
            find_many_runs=3,
            store_instances=200,
            dcmtk_store_instances=100,
            move_studies=20,
            move_instances=5,
            memory_instances=10_000,
            memory_clients=4,
            load_threads=4,
        )
    if args.scaling:
        plan.scaling = sorted({int(s) for s in args.scaling.split(",") if s.strip()})
        plan.studies = max([*plan.scaling, plan.studies if args.studies_given else 0])
    if args.memory_instances is not None:
        plan.memory_instances = args.memory_instances
    plan.find_set = min(plan.find_set, plan.studies)
    return plan


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Bench:
    def __init__(self, stack: Stack, plan: Plan) -> None:
        self.stack = stack
        self.plan = plan
        assert stack.orthanc is not None
        self.auth = (stack.orthanc.username, stack.orthanc.password)
        self.factory = Factory()
        self.loader = Loader(stack.url, self.auth, self.factory, [LABEL], threads=plan.load_threads)
        self.studies: list[StudyKeys] = []
        self.loaded_instances = 0
        self.load_seconds = 0.0
        self.rows: list[Row] = []
        self.baselines: dict[str, Any] = {}
        self.scaling: list[dict[str, Any]] = []
        self.rng = random.Random(7)
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        """Something a server got wrong: recorded and shown, the run goes on (figures count successes)."""
        log(f"WARNING {message}")
        self.warnings.append(message)

    # --- archive --------------------------------------------------------------------

    def grow_to(self, total: int) -> None:
        """Add studies until the archive has ``total``: the C-FIND set first, then 1-instance fillers."""
        new: list[StudyKeys] = []
        while len(self.studies) + len(new) < total:
            index = len(self.studies) + len(new)
            if index < self.plan.find_set:
                new.append(self.factory.study(3, FIND_DATE))
            else:
                new.append(self.factory.study(1))
        if not new:
            return
        log(f"loading {len(new)} studies into Orthanc (archive -> {total})")
        report = self.loader.load(
            new, progress=lambda d, n: log(f"  {d}/{n} studies") if d % 5000 == 0 else None
        )
        self.studies += new
        self.loaded_instances += report.instances
        self.load_seconds += report.seconds
        log(f"  {report.instances} instances in {report.seconds:.1f} s ({report.per_second:.0f}/s)")

    def random_uids(self, count: int) -> list[str]:
        return [self.rng.choice(self.studies).study_uid for _ in range(count)]

    # --- C-ECHO and C-FIND -------------------------------------------------------------

    def echo(self) -> None:
        """C-ECHO round trips, both servers in turn: the DIMSE cost with no Orthanc work behind it."""
        from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

        sides = self.stack.sides
        assocs = [clients.associate(side.aet, side.port, Verification) for side in sides]
        times: dict[str, list[float]] = {side.name: [] for side in sides}
        try:
            for _ in range(self.plan.find_repeat + 2):
                for side, assoc in zip(sides, assocs, strict=True):
                    start = time.perf_counter()
                    assoc.send_c_echo()
                    times[side.name].append(time.perf_counter() - start)
        finally:
            for assoc in assocs:
                assoc.release()
        values = {name: median(t[2:]) * 1000 for name, t in times.items()}
        self.rows.append(
            Row("cecho", "C-ECHO p50, open association", "pynetdicom", "ms", values["plugin"], values["ours"])
        )

    def find_by_uid(self) -> dict[str, float]:
        uids = self.random_uids(self.plan.find_repeat + 2)
        values: dict[str, float] = {}
        details: dict[str, Any] = {}
        sides = self.stack.sides
        endpoints = [(side.aet, side.port) for side in sides]
        all_times = clients.find_interleaved(endpoints, [clients.study_query(uid=u) for u in uids])
        for side, times in zip(sides, all_times, strict=True):
            if set(times.matches) != {1} or set(times.statuses) != {0}:
                self.warn(
                    f"{side.name}: C-FIND by UID answered {set(times.matches)} matches, {set(times.statuses)}"
                )
            values[side.name] = median(times.seconds) * 1000
            details[side.name] = {
                "p90_ms": round(percentile(times.seconds, 0.9) * 1000, 2),
                "mean_ms": round(statistics.fmean(times.seconds) * 1000, 2),
                "queries": len(times.seconds),
            }
        self.rows.append(
            Row(
                "cfind_uid",
                "C-FIND 1 study by UID, p50",
                "pynetdicom",
                "ms",
                values["plugin"],
                values["ours"],
                0.2,
                details,
            )
        )
        return values

    def find_many(self, runs: int, record: bool = True) -> dict[str, float]:
        values: dict[str, float] = {}
        details: dict[str, Any] = {}
        query = clients.study_query(date=FIND_DATE, extra=True)
        sides = self.stack.sides
        endpoints = [(side.aet, side.port) for side in sides]
        all_times = clients.find_interleaved(endpoints, [query] * (runs + 1), warmup=1)
        for side, times in zip(sides, all_times, strict=True):
            if set(times.matches) != {self.plan.find_set}:
                self.warn(f"{side.name}: expected {self.plan.find_set} matches, got {times.matches}")
            values[side.name] = median(times.seconds) * 1000
            details[side.name] = {"runs_ms": [round(t * 1000, 1) for t in times.seconds]}
        if record:
            self.rows.append(
                Row(
                    "cfind_many",
                    f"C-FIND {self.plan.find_set} studies + extra keys",
                    "pynetdicom",
                    "ms",
                    values["plugin"],
                    values["ours"],
                    0.5,
                    {**details, "matches": self.plan.find_set, "extra_keys": list(clients.EXTRA_KEYS)},
                )
            )
        return values

    def rest_find_by_uid(self) -> float:
        """What the plugin asks Orthanc for one C-FIND by UID (``/tools/find``, Expand)."""
        times = []
        with requests.Session() as session:
            session.auth = self.auth
            for uid in self.random_uids(self.plan.find_repeat + 2):
                body = {
                    "Level": "Study",
                    "Query": {"StudyInstanceUID": uid},
                    "Expand": True,
                    "Labels": [LABEL],
                    "LabelsConstraint": "All",
                }
                start = time.perf_counter()
                session.post(self.stack.url + "/tools/find", json=body, timeout=60).raise_for_status()
                times.append(time.perf_counter() - start)
        return median(times[2:]) * 1000

    def dcmtk_finds(self) -> None:
        uid = self.random_uids(1)[0]
        values = {
            side.name: dcmtk.find_latency(side.aet, side.port, uid, self.plan.find_repeat) * 1000
            for side in self.stack.sides
        }
        self.rows.append(
            Row(
                "cfind_uid_dcmtk",
                "C-FIND 1 study by UID, per query",
                "findscu",
                "ms",
                values["plugin"],
                values["ours"],
                0.2,
            )
        )
        walls = {
            side.name: dcmtk.find_wall(side.aet, side.port, FIND_DATE, True, self.plan.find_many_runs)
            for side in self.stack.sides
        }
        self.rows.append(
            Row(
                "cfind_many_dcmtk",
                f"C-FIND {self.plan.find_set} studies + extra keys",
                "findscu",
                "ms",
                median(walls["plugin"]) * 1000,
                median(walls["ours"]) * 1000,
                0.5,
                {name: {"runs_ms": [round(t * 1000, 1) for t in w]} for name, w in walls.items()},
            )
        )

    # --- C-STORE ------------------------------------------------------------------------

    def fresh_files(self, count: int) -> list[bytes]:
        return [self.factory.instance(self.factory.study(1), 0) for _ in range(count)]

    def stores(self) -> None:
        n = self.plan.store_instances
        rest = {
            threads: clients.rest_post(self.stack.url, self.auth, self.fresh_files(n), threads)
            for threads in (1, 4)
        }
        self.baselines["rest_post_instances_per_s"] = {
            str(t): round(r.per_second, 1) for t, r in rest.items()
        }
        for associations in (1, 4):
            runs = {}
            for side in self.stack.sides:
                run = clients.store_parallel(side.aet, side.port, self.fresh_files(n), associations)
                if run.failed or run.ok != n:
                    self.warn(f"{side.name}: {run.failed} of {n} C-STOREs failed ({associations} assoc.)")
                runs[side.name] = run
            limit = rest[associations].per_second
            self.rows.append(
                Row(
                    f"cstore_{associations}",
                    f"C-STORE, {associations} association{'s' if associations > 1 else ''}",
                    "pynetdicom",
                    "instances/s",
                    runs["plugin"].per_second,
                    runs["ours"].per_second,
                    5.0,
                    {
                        "instances": n,
                        "rest_post_per_s": round(limit, 1),
                        "ours_vs_rest": round(runs["ours"].per_second / limit, 3) if limit else 0,
                        "ours_vs_rest_target": 0.5,
                    },
                )
            )

    def dcmtk_store(self, workdir: Path) -> None:
        n = self.plan.dcmtk_store_instances
        rates = {}
        for side in self.stack.sides:
            folder = workdir / f"storescu-{side.name}"
            folder.mkdir(parents=True, exist_ok=True)
            files = []
            for index, blob in enumerate(self.fresh_files(n)):
                path = folder / f"{index:05d}.dcm"
                path.write_bytes(blob)
                files.append(path)
            rates[side.name] = n / dcmtk.store(side.aet, side.port, files)
        self.rows.append(
            Row(
                "cstore_1_dcmtk",
                "C-STORE, 1 association (whole run)",
                "storescu",
                "instances/s",
                rates["plugin"],
                rates["ours"],
                5.0,
                {"instances": n},
            )
        )

    # --- C-MOVE -------------------------------------------------------------------------

    def moves(self) -> None:
        plan = self.plan
        studies = [self.factory.study(plan.move_instances) for _ in range(plan.move_studies)]
        ids = [self.loader.load_study(s) for s in studies]
        total = plan.move_studies * plan.move_instances
        rates = {}
        details: dict[str, Any] = {"studies": plan.move_studies, "instances": total}
        dest = self.stack.destination
        for side in self.stack.sides:
            before = dest.received
            run = clients.move_studies(side.aet, side.port, [s.study_uid for s in studies], dest.aet)
            delivered = total if dest.wait_for(before + total) else dest.received - before
            if delivered != total or set(run.statuses) != {0}:
                self.warn(f"{side.name}: C-MOVE delivered {delivered}/{total}, statuses {set(run.statuses)}")
            rates[side.name] = delivered / run.seconds
            details[side.name] = {"pending_responses": run.pending, "reported_completed": run.completed}
        # The alternative: Orthanc pushes the study itself (what the plugin does), asked over REST.
        before = dest.received
        start = time.perf_counter()
        with requests.Session() as session:
            session.auth = self.auth
            for study_id in ids:
                reply = session.post(
                    f"{self.stack.url}/modalities/dest/store",
                    json={"Resources": [study_id], "Synchronous": True, "LocalAet": self.stack.ours.aet},
                    timeout=300,
                )
                reply.raise_for_status()
        dest.wait_for(before + total)
        push = total / (time.perf_counter() - start)
        self.baselines["orthanc_push_rest_instances_per_s"] = round(push, 1)
        self.rows.append(
            Row(
                "cmove",
                "C-MOVE study, 1 association",
                "pynetdicom",
                "instances/s",
                rates["plugin"],
                rates["ours"],
                5.0,
                details,
            )
        )

    # --- scaling ------------------------------------------------------------------------

    def scale_point(self) -> None:
        log(f"C-FIND at {len(self.studies)} studies")
        uid = self.find_by_uid()
        self.rows.pop()
        many = self.find_many(2, record=False)
        self.scaling.append(
            {
                "studies": len(self.studies),
                "instances": self.loaded_instances,
                "cfind_uid_p50_ms": {k: round(v, 2) for k, v in uid.items()},
                "cfind_many_ms": {k: round(v, 1) for k, v in many.items()},
                "rest_find_uid_p50_ms": round(self.rest_find_by_uid(), 2),
            }
        )
        log(f"  {self.scaling[-1]}")


def run_memory(stack: Stack, plan: Plan) -> dict[str, Any]:
    from local_orthanc.server import free_port

    endpoints = [(f"MEM{i}", free_port()) for i in range(memory.TENANTS)]
    servers = [{"AET": aet, "Port": port, "Labels": [aet.lower()]} for aet, port in endpoints]
    process = stack.start_tenant_server(servers)
    time.sleep(1.0)
    log(
        f"memory: {plan.memory_instances} instances through {memory.TENANTS} tenants, {plan.memory_clients} clients"
    )
    run = memory.store_and_sample(
        process.pid,
        endpoints,
        plan.memory_instances,
        plan.memory_clients,
        Factory().run,
    )
    process.stop()
    mib = 2**20
    quarter = max(1, len(run.samples) // 4)
    return {
        "tenants": memory.TENANTS,
        "instances": run.instances,
        "stored_ok": run.ok,
        "failed": run.failed,
        "seconds": round(run.seconds, 1),
        "instances_per_s": round(run.ok / run.seconds, 1) if run.seconds else 0,
        "rss_start_mib": round(run.start_rss / mib, 1),
        "rss_peak_mib": round(run.peak_rss / mib, 1),
        "rss_end_mib": round(run.end_rss / mib, 1),
        "rss_by_quarter_mib": [
            round(max(s[1] for s in run.samples[i : i + quarter]) / mib, 1)
            for i in range(0, len(run.samples), quarter)
        ][:4],
        "target_mib": 150,
        "target_met": run.peak_rss < 150 * mib,
    }


FLOOR_KEYS = {
    "cstore_1": "cstore_1_per_s",
    "cstore_4": "cstore_4_per_s",
    "cfind_many": "cfind_many_pynetdicom_ms",
    "cfind_many_dcmtk": "cfind_many_findscu_ms",
}


def print_floors(rows: list[Row], floors: dict[str, float]) -> None:
    """The best ratio any server could reach with the same client, next to ours and the target."""
    for row in rows:
        key = FLOOR_KEYS.get(row.key)
        if key is None or not isinstance(floors.get(key), float | int) or not row.plugin:
            continue
        best = floors[key] / row.plugin
        print(
            f"{row.title} ({row.client}): a server doing no work reaches {floors[key]:.1f} {row.unit}, "
            f"ratio {best:.2f} (ours {row.ratio:.2f}, target {row.target})"
        )


def orthanc_version(stack: Stack) -> str:
    with stack.rest() as session:
        return str(session.get(stack.url + "/system", timeout=10).json().get("Version", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=None, help="archive size in studies (default 2000)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for CI (about a minute)")
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON, help=f"results file (default {DEFAULT_JSON})"
    )
    parser.add_argument("--skip-memory", action="store_true", help="skip the 10-tenant memory run")
    parser.add_argument("--skip-dcmtk", action="store_true", help="skip the dcmtk client runs")
    parser.add_argument(
        "--memory-instances", type=int, default=None, help="instances stored in the memory run"
    )
    parser.add_argument(
        "--scaling",
        default="",
        help="comma-separated archive sizes: grow the archive step by step and time C-FIND at each",
    )
    args = parser.parse_args(argv)
    args.studies_given = args.studies is not None
    if args.studies is None:
        args.studies = 2000
    plan = make_plan(args)
    use_dcmtk = not args.skip_dcmtk and dcmtk.available()
    started = time.perf_counter()
    load_at_start = list(os.getloadavg())
    log(f"plan: {plan}")
    log(
        f"load average {load_at_start} on {os.cpu_count()} CPUs (other work on the machine skews absolute figures)"
    )
    with Stack() as stack, tempfile.TemporaryDirectory(prefix="mtdicom-bench-files-") as scratch:
        log(f"Orthanc {stack.url}, plugin tenant :{stack.plugin.port}, our tenant :{stack.ours.port}")
        bench = Bench(stack, plan)
        for size in plan.scaling:
            bench.grow_to(size)
            bench.scale_point()
        bench.grow_to(plan.studies)
        log("C-ECHO / C-FIND")
        bench.echo()
        bench.find_by_uid()
        bench.find_many(plan.find_many_runs)
        rest_find = bench.rest_find_by_uid()
        bench.baselines["rest_find_by_uid_p50_ms"] = round(rest_find, 2)
        if use_dcmtk:
            log("dcmtk findscu")
            bench.dcmtk_finds()
        log("C-STORE")
        bench.stores()
        if use_dcmtk:
            log("dcmtk storescu")
            bench.dcmtk_store(Path(scratch))
        log("C-MOVE")
        bench.moves()
        log("client floors (the same clients against a server that does no work)")
        try:
            bench.baselines["client_floor"] = floor.measure(
                bench.fresh_files(plan.store_instances), plan.find_set, plan.find_many_runs, use_dcmtk
            )
        except Exception as exc:  # the comparison above is worth keeping even so
            bench.warn(f"client floor run failed: {exc!r}")
            bench.baselines["client_floor"] = {"error": repr(exc)}
        meta = machine_info(orthanc_version(stack), dcmtk.version() if use_dcmtk else "")
        meta["loadavg_at_start"] = load_at_start
        meta["loadavg_before_memory"] = list(os.getloadavg())
        memory_result: dict[str, Any] | None = None
        if not args.skip_memory:
            try:
                memory_result = run_memory(stack, plan)
            except Exception as exc:  # the comparison above is worth keeping even so
                log(f"memory run failed: {exc!r}")
                memory_result = {"error": repr(exc)}
    payload: dict[str, Any] = {
        "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "meta": meta,
        "archive": {
            "studies": len(bench.studies),
            "instances": bench.loaded_instances,
            "load_seconds": round(bench.load_seconds, 1),
            "find_set_studies": plan.find_set,
        },
        "sides": {side.name: {"aet": side.aet, "labels": [LABEL]} for side in (stack.plugin, stack.ours)},
        "move_destination": stack.destination.kind,
        "operations": {row.key: row.as_json() for row in bench.rows},
        "baselines": bench.baselines,
        "scaling": bench.scaling,
        "memory": memory_result,
        "warnings": bench.warnings,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_json(args.json, payload)
    print()
    print(table(bench.rows))
    print()
    for row in bench.rows:
        if "ours_vs_rest" in row.details:
            print(
                f"{row.title}: ours {row.ours:.1f}/s = {row.details['ours_vs_rest']:.2f}x of POST /instances "
                f"({row.details['rest_post_per_s']:.1f}/s; target >= 0.5x)"
            )
    print(
        f"Orthanc pushing the same studies (POST /modalities/dest/store): {bench.baselines.get('orthanc_push_rest_instances_per_s')}/s"
    )
    print(f"REST /tools/find by UID (what the plugin asks): {rest_find:.1f} ms p50")
    print_floors(bench.rows, bench.baselines["client_floor"])
    if memory_result and "error" not in memory_result:
        print(
            f"memory, {memory_result['tenants']} tenants, {memory_result['stored_ok']} instances stored: RSS "
            f"{memory_result['rss_start_mib']} -> peak {memory_result['rss_peak_mib']} -> {memory_result['rss_end_mib']} MiB "
            f"(target < 150 MiB: {'met' if memory_result['target_met'] else 'NOT met'})"
        )
    for point in bench.scaling:
        print(f"scaling: {point}")
    for warning in bench.warnings:
        print(f"WARNING: {warning}")
    print(f"\n{args.json} written in {payload['seconds']} s")
    return 0
