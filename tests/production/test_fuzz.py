"""Bad input: random and mutated PDUs, truncated associations, malformed identifiers and data sets.

The server must never crash or hang: each bad connection is answered (a failure status,
A-ASSOCIATE-RJ or A-ABORT) or closed, within a bounded time once the client has said all
it will say, and associations running meanwhile are unaffected.

Mutations start from PDUs recorded from real pynetdicom associations (echo, find, store).
Sizes are CI-friendly; ``MTDICOM_LONG=1`` runs about twenty times more cases.
"""

from __future__ import annotations

import random
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from local_orthanc import OrthancHandle
from local_orthanc.server import free_port
from local_orthanc.synthetic import StudySpec, study_instances
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from tests.production.pdus import (
    Conversation,
    Recorder,
    Reply,
    Session,
    cases,
    pdu,
    pdv,
    pdvs,
    split_pdus,
)
from tests.production.support import (
    ServerProcess,
    associate,
    echo,
    find,
    long_or,
    process_config,
    server_process,
    store,
    study_query,
)

MUTATED_CASES = long_or(600, 20000)
HYPOTHESIS_EXAMPLES = long_or(100, 2000)
IDENTIFIER_CASES = long_or(200, 5000)
SCP_TIMEOUT = 3
LONG_TIMEOUT = pytest.mark.timeout(long_or(300, 3600))  # pytest-timeout's 300 s is for CI sizes
CLOSE_WITHIN = 15.0  # seconds after the client's half-close; beyond that the server hung

SUCCESS, PENDING = 0x0000, (0xFF00, 0xFF01)

# The absurd queries are absurd on purpose: pydicom's warnings about them are noise here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@dataclass
class Tally:
    """How many cases ran and what the server did with them."""

    outcomes: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, reply: Reply) -> None:
        assert reply.closed, f"{kind}: the server neither answered nor closed"
        assert reply.seconds < CLOSE_WITHIN, f"{kind}: closed only after {reply.seconds:.1f} s"
        self.outcomes[f"{kind}: {reply.outcome}"] += 1

    @property
    def total(self) -> int:
        return sum(self.outcomes.values())


@dataclass
class Target:
    server: ServerProcess
    port: int
    sessions: dict[str, Session]
    tally: Tally = field(default_factory=Tally)


@pytest.fixture(scope="module")
def target(orthanc: OrthancHandle) -> Iterator[Target]:
    port = free_port()
    config = process_config(
        orthanc,
        [{"AET": "FUZZ", "Port": port, "Labels": ["fuzz_target"]}],
        DicomAlwaysAllowFind=True,
        DicomScpTimeout=SCP_TIMEOUT,
    )
    with server_process(config) as server:
        recorder = Recorder(port)
        spec = StudySpec(patient_name="Fuzz^Target", instances_per_series=1)
        instance = next(study_instances(spec))
        for name in ("echo", "find", "store"):
            assoc = associate(recorder.port, "FUZZ")
            if name == "echo":
                assert echo(assoc) == SUCCESS
            elif name == "find":
                assert find(assoc, study_query(spec.study_uid, PatientName="Fuzz*", StudyDate=""))[0] == 0
            else:
                assert store(assoc, instance) == SUCCESS
            assoc.release()
            time.sleep(0.1)
        recorder.close()
        sessions = {
            name: Session(name, split_pdus(bytes(stream)))
            for name, stream in zip(("echo", "find", "store"), recorder.streams, strict=True)
        }
        for session in sessions.values():
            assert session.pdus[0][0] == 1 and session.pdus[-1][0] == 5
        yield Target(server, port, sessions)


def request_complete(session: Session, index: int) -> bool:
    """Whether PDU ``index`` ends a request the server will answer (so the client waits)."""
    data = session.pdus[index]
    if data[0] == 1:
        return True
    if data[0] != 4:
        return False
    following = session.pdus[index + 1] if index + 1 < len(session.pdus) else b"\x05"
    last = pdvs(data)[-1]
    return following[0] != 4 or (not last[1] & 1 and bool(last[1] & 2))


def replay(target: Target, session: Session, index: int, mutated: bytes, rest: bool) -> Reply:
    """The session's PDUs up to ``index`` as recorded (reading the answers), the mutated one, maybe the rest."""
    with Conversation(target.port) as talk:
        for i in range(index):
            if not talk.send(session.pdus[i]):
                break
            if request_complete(session, i):
                if session.pdus[i][0] == 1:
                    talk.read()
                else:
                    talk.read_until_final()
        talk.send(mutated)
        if rest:
            for later in session.pdus[index + 1 :]:
                if not talk.send(later):
                    break
        return talk.finish()


class Canary:
    """A well-behaved client running alongside the fuzzing: it must never notice."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.failures: list[str] = []
        self.exchanges = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Canary:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        long_lived = associate(self.port, "FUZZ", "CANARY")
        while not self._stop.is_set():
            status = echo(long_lived) if long_lived.is_established else -1
            fresh = associate(self.port, "FUZZ", "CANARY2")
            fresh_ok = fresh.is_established and echo(fresh) == SUCCESS
            fresh.release()
            if status != SUCCESS or not fresh_ok:
                self.failures.append(f"after {self.exchanges} exchanges")
                long_lived = associate(self.port, "FUZZ", "CANARY")
            self.exchanges += 1
            time.sleep(0.05)
        long_lived.release()


def settle(target: Target, baseline: dict[str, int]) -> dict[str, int]:
    """Wait until the server's threads and descriptors are back to ``baseline``."""
    deadline = time.monotonic() + SCP_TIMEOUT + 10
    while True:
        stats = target.server.stats()
        done = stats["threads"] <= baseline["threads"] and stats["fds"] <= baseline["fds"]
        if done or time.monotonic() > deadline:
            return stats
        time.sleep(0.2)


def healthy(target: Target) -> None:
    assert target.server.alive()
    assoc = associate(target.port, "FUZZ", "AFTER")
    assert assoc.is_established
    assert echo(assoc) == SUCCESS
    assoc.release()


@pytest.fixture
def baseline(target: Target) -> Iterator[dict[str, int]]:
    healthy(target)
    time.sleep(0.3)
    before = target.server.stats()
    yield before
    healthy(target)
    after = settle(target, before)
    print(f"\nserver before {before}, after {after}")
    assert after["threads"] <= before["threads"], (before, after)
    assert after["fds"] <= before["fds"], (before, after)


@LONG_TIMEOUT
def test_mutated_pdus(target: Target, baseline: dict[str, int]) -> None:
    tally = Tally()
    rng = random.Random(8)
    with Canary(target.port) as canary:
        for name, session, index, mutated in cases(list(target.sessions.values()), MUTATED_CASES, seed=8):
            reply = replay(target, session, index, mutated, rest=rng.random() < 0.5)
            tally.add(f"{session.name}/{name}", reply)
    assert tally.total == MUTATED_CASES
    assert not canary.failures and canary.exchanges > 0
    print(f"\nmutated PDUs: {tally.total} cases, canary {canary.exchanges} exchanges, 0 failures")
    for outcome, count in sorted(tally.outcomes.items()):
        print(f"  {count:5} {outcome}")


HYPOTHESIS = settings(
    max_examples=HYPOTHESIS_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
PDU_TYPES = st.one_of(st.integers(1, 7), st.integers(0, 255))


@LONG_TIMEOUT
@HYPOTHESIS
@given(data=st.binary(max_size=4096))
def test_random_bytes(target: Target, baseline: dict[str, int], data: bytes) -> None:
    with Conversation(target.port) as talk:
        talk.send(data)
        target.tally.add("random bytes", talk.finish())
    assert target.server.alive()


@LONG_TIMEOUT
@HYPOTHESIS
@given(frames=st.lists(st.tuples(PDU_TYPES, st.binary(max_size=2048)), min_size=1, max_size=4))
def test_random_pdus(target: Target, baseline: dict[str, int], frames: list[tuple[int, bytes]]) -> None:
    with Conversation(target.port) as talk:
        for kind, body in frames:
            talk.send(pdu(kind, body))
        target.tally.add("random PDUs", talk.finish())
    assert target.server.alive()


ITEM_TYPES = st.one_of(
    st.sampled_from([0x10, 0x20, 0x21, 0x30, 0x40, 0x50, 0x51, 0x52, 0x55]), st.integers(0, 255)
)


def association_request(version: int, called: bytes, calling: bytes, items: bytes) -> bytes:
    return pdu(1, struct.pack(">HH", version, 0) + called + calling + bytes(32) + items)


@LONG_TIMEOUT
@HYPOTHESIS
@given(
    version=st.one_of(st.just(1), st.integers(0, 0xFFFF)),
    called=st.one_of(st.just(b"FUZZ".ljust(16)), st.binary(min_size=16, max_size=16)),
    calling=st.one_of(st.just(b"FUZZER".ljust(16)), st.binary(min_size=16, max_size=16)),
    items=st.lists(st.tuples(ITEM_TYPES, st.binary(max_size=300)), max_size=6),
    keep_real_items=st.booleans(),
)
def test_random_association_requests(
    target: Target,
    baseline: dict[str, int],
    version: int,
    called: bytes,
    calling: bytes,
    items: list[tuple[int, bytes]],
    keep_real_items: bool,
) -> None:
    real = target.sessions["echo"].pdus
    body = b"".join(struct.pack(">BBH", kind, 0, len(value)) + value for kind, value in items)
    if keep_real_items:
        body = real[0][74:] + body
    with Conversation(target.port) as talk:
        talk.send(association_request(version, called, calling, body))
        answer = talk.read()
        if answer is not None and answer[0] == 2:
            talk.send(real[1])  # the recorded C-ECHO
            talk.read_until_final()
        target.tally.add("association requests", talk.finish())
    assert target.server.alive()


# --- identifiers and data sets -----------------------------------------------------------


def find_request(target: Target) -> tuple[bytes, int, bytes]:
    """The recorded association request, presentation context ID and C-FIND command set."""
    session = target.sessions["find"]
    index = session.first(4)
    context, control, command = pdvs(session.pdus[index])[0]
    assert control & 1
    return session.pdus[0], context, command


def ask_with_identifier(target: Target, identifier: bytes, store_session: bool = False) -> Reply:
    """A real association and DIMSE command, then ``identifier`` as the data set."""
    if store_session:
        session = target.sessions["store"]
        context, _, command = pdvs(session.pdus[session.first(4)])[0]
        request = session.pdus[0]
    else:
        request, context, command = find_request(target)
    with Conversation(target.port) as talk:
        talk.send(request)
        assert (talk.read() or b"\x00")[0] == 2
        talk.send(pdu(4, pdv(context, 0x03, command)))
        talk.send(pdu(4, pdv(context, 0x02, identifier)))
        talk.read_until_final()
        return talk.finish()


def element(group: int, elem: int, value: bytes, length: int | None = None) -> bytes:
    """One implicit VR little endian element, with a chosen (possibly wrong) length."""
    return struct.pack("<HHL", group, elem, len(value) if length is None else length) + value


LEVEL = element(0x0008, 0x0052, b"STUDY ")
MALFORMED = {
    "length beyond the end": LEVEL + element(0x0010, 0x0010, b"Doe^J", length=4000),
    "truncated element header": LEVEL + b"\x10\x00\x10",
    "undefined length sequence, no delimiter": LEVEL
    + element(0x0008, 0x1110, b"\xfe\xff\x00\xe0", 0xFFFFFFFF),
    "odd undefined length value": LEVEL + element(0x0010, 0x0010, b"abc", length=0xFFFFFFFF),
    "no QueryRetrieveLevel": element(0x0010, 0x0010, b"Doe^J "),
    "unknown QueryRetrieveLevel": element(0x0008, 0x0052, b"GALAXY"),
    "level as a sequence": element(0x0008, 0x0052, b"\xfe\xff\x00\xe0\x00\x00\x00\x00", 0xFFFFFFFF),
    "all 0xFF": b"\xff" * 512,
    "all zeros": bytes(512),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_find_identifier_is_a_failure(target: Target, name: str) -> None:
    reply = ask_with_identifier(target, MALFORMED[name])
    assert reply.closed and reply.seconds < CLOSE_WITHIN
    final = [s for s in reply.statuses if s not in PENDING]
    if final:  # answered: with a failure, never a success
        assert final[-1] != SUCCESS, f"{name}: 0x{final[-1]:04X}"
        assert not [s for s in reply.statuses if s in PENDING], f"{name}: a query ran on a broken identifier"
    else:  # or aborted
        assert reply.pdu_types and reply.pdu_types[-1] == 7, reply.outcome
    assert target.server.alive()


@pytest.mark.parametrize("name", ["length beyond the end", "truncated element header", "all 0xFF"])
def test_malformed_store_data_set_is_a_failure(target: Target, name: str) -> None:
    reply = ask_with_identifier(target, MALFORMED[name], store_session=True)
    final = [s for s in reply.statuses if s not in PENDING]
    assert (final and final[-1] != SUCCESS) or (reply.pdu_types and reply.pdu_types[-1] == 7), reply.outcome
    assert target.server.alive()


@LONG_TIMEOUT
def test_random_identifiers(target: Target, baseline: dict[str, int]) -> None:
    """Random element soups behind a valid C-FIND command: never a crash, always an answer."""
    rng = random.Random(11)
    tags = [(0x0008, 0x0052), (0x0010, 0x0010), (0x0010, 0x0020), (0x0020, 0x000D), (0x0008, 0x0020)]
    tags += [(0x0008, 0x1110), (0x0009, 0x0010), (0x7FE0, 0x0010), (0xFFFE, 0xE000), (0x0000, 0x0000)]
    tally = Tally()
    answered = 0
    for _ in range(IDENTIFIER_CASES):
        parts = [LEVEL] if rng.random() < 0.7 else []
        for _ in range(rng.randint(0, 6)):
            group, elem = (
                rng.choice(tags) if rng.random() < 0.8 else (rng.randrange(0x10000), rng.randrange(0x10000))
            )
            value = rng.randbytes(rng.choice((0, 1, 2, 8, 64, 300)))
            length = None if rng.random() < 0.8 else rng.choice((0, 1, 0xFFFFFFFF, rng.randrange(1 << 16)))
            parts.append(element(group, elem, value, length))
        reply = ask_with_identifier(target, b"".join(parts))
        tally.add("random identifier", reply)
        answered += bool([s for s in reply.statuses if s not in PENDING])
    print(
        f"\nrandom identifiers: {tally.total} cases, {answered} answered with a final status, the rest aborted"
    )
    assert tally.total == IDENTIFIER_CASES


def huge_and_wrong_queries() -> dict[str, Dataset]:
    queries = {}
    ds = study_query(PatientName="A" * 200_000)
    queries["200 kB PatientName"] = ds
    ds = study_query(StudyDate="not a date at all")
    queries["StudyDate not a date"] = ds
    ds = study_query()
    ds.add(DataElement(Tag(0x0010, 0x0020), "OB", b"\x00\x01\x02\x03"))
    queries["PatientID as OB"] = ds
    ds = study_query()
    ds.add(DataElement(Tag(0x0020, 0x000D), "UI", "1." * 5000))
    queries["10 kB Study UID"] = ds
    ds = study_query()
    ds.add(DataElement(Tag(0x0010, 0x0010), "PN", "\\".join(["X*"] * 3000)))
    queries["3000 wildcard alternatives"] = ds
    ds = study_query()
    ds.add(DataElement(Tag(0x0011, 0x1010), "UN", b"\xff" * 1000))
    queries["private UN element"] = ds
    ds = study_query()
    ds.SpecificCharacterSet = "ISO 2022 IR 149 NONSENSE"
    ds.PatientName = "Zz*"
    queries["unknown character set"] = ds
    return queries


def test_huge_and_wrong_vr_queries_through_pynetdicom(target: Target) -> None:
    """Well-framed but absurd identifiers: each one answered, the association still usable."""
    assoc = associate(target.port, "FUZZ")
    assert assoc.is_established
    results = {}
    for name, query in huge_and_wrong_queries().items():
        status, _ = find(assoc, query)
        assert status not in (-1, *PENDING), name
        results[name] = f"0x{status:04X}"
        assert assoc.is_established, name
    assert echo(assoc) == SUCCESS
    assoc.release()
    print(f"\nabsurd queries: {results}")
    assert target.server.alive()


def test_truncated_then_silent_peers_are_closed_after_the_scp_timeout(target: Target) -> None:
    """Half a PDU and then silence, before and after the association is accepted: pynetdicom's
    blocking recv would wait forever; the server must close within DicomScpTimeout."""
    request = target.sessions["echo"].pdus[0]
    with Conversation(target.port) as before, Conversation(target.port) as after:
        before.send(request[:40])
        after.send(request)
        assert (after.read() or b"\x00")[0] == 2
        after.send(struct.pack(">BBL", 4, 0, 500) + bytes(20))
        start = time.monotonic()
        for talk in (before, after):
            talk.sock.settimeout(SCP_TIMEOUT + 10)
            while talk.read() is not None:
                pass
            assert talk.reply.closed
        assert time.monotonic() - start < SCP_TIMEOUT + 5
    assert target.server.alive()


@pytest.mark.parametrize("after_association", [False, True], ids=["request", "p-data"])
def test_oversized_pdu_is_refused_before_it_is_buffered(target: Target, after_association: bool) -> None:
    """A PDU header announcing 200 MB: pynetdicom would read it all into memory."""
    request = target.sessions["echo"].pdus[0]
    before = target.server.stats()["rss_kb"]
    sent = 0
    with Conversation(target.port) as talk:
        if after_association:
            talk.send(request)
            assert (talk.read() or b"\x00")[0] == 2
        kind = 4 if after_association else 1
        talk.sock.settimeout(10)
        chunk = bytes(1 << 20)
        try:
            talk.sock.sendall(struct.pack(">BBL", kind, 0, 200 << 20))
            while sent < 64 << 20:
                talk.sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
    assert sent < 16 << 20, f"the server took {sent >> 20} MB of a 200 MB PDU"
    assert target.server.stats()["rss_kb"] - before < 16_000
    healthy(target)


def test_report(target: Target) -> None:
    """The hypothesis cases, counted (the other tests print their own)."""
    print(f"\nhypothesis: {target.tally.total} cases")
    for outcome, count in sorted(target.tally.outcomes.items()):
        print(f"  {count:5} {outcome}")
    assert target.tally.total >= 3 * min(HYPOTHESIS_EXAMPLES, 10)
