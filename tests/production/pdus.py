"""Raw DICOM upper-layer PDUs for the fuzz tests: record a real client's, split, mutate,
send over a plain socket, and read what the server answers."""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from io import BytesIO

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset

from tests.production.support import free_port

PDU_NAMES = {1: "A-ASSOCIATE-RQ", 2: "A-ASSOCIATE-AC", 3: "A-ASSOCIATE-RJ", 4: "P-DATA-TF", 5: "A-RELEASE-RQ"}
PDU_NAMES.update({6: "A-RELEASE-RP", 7: "A-ABORT"})


def split_pdus(stream: bytes) -> list[bytes]:
    """A byte stream as whole PDUs (type, reserved, 4-byte big-endian length, body)."""
    pdus = []
    while len(stream) >= 6:
        length = struct.unpack(">L", stream[2:6])[0]
        pdus.append(stream[: 6 + length])
        stream = stream[6 + length :]
    return pdus


def pdu(kind: int, body: bytes) -> bytes:
    return struct.pack(">BBL", kind, 0, len(body)) + body


def pdv(context_id: int, control: int, data: bytes) -> bytes:
    """One presentation data value item: control bit 0 = command, bit 1 = last fragment."""
    return struct.pack(">LBB", len(data) + 2, context_id, control) + data


def pdvs(p_data: bytes) -> list[tuple[int, int, bytes]]:
    """The (context ID, control header, data) items of a P-DATA-TF PDU."""
    items, offset = [], 6
    while offset + 6 <= len(p_data):
        length = struct.unpack(">L", p_data[offset : offset + 4])[0]
        items.append((p_data[offset + 4], p_data[offset + 5], p_data[offset + 6 : offset + 4 + length]))
        offset += 4 + length
    return items


@dataclass
class Session:
    """The PDUs one real client sent, in order."""

    name: str
    pdus: list[bytes]

    def first(self, kind: int) -> int:
        return next(i for i, p in enumerate(self.pdus) if p[0] == kind)


class Recorder:
    """A TCP forwarder that keeps what clients send to the server, one entry per connection."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.streams: list[bytearray] = []
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            record = bytearray()
            self.streams.append(record)
            threading.Thread(target=self._pump, args=(client, upstream, record), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, None), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket, record: bytearray | None) -> None:
        try:
            while data := source.recv(65536):
                if record is not None:
                    record.extend(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listener.close()


# --- talking raw ---------------------------------------------------------------------------


@dataclass
class Reply:
    """What the server did with one case."""

    pdu_types: list[int] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    closed: bool = False  # the server closed the connection (EOF or reset)
    seconds: float = 0.0

    @property
    def outcome(self) -> str:
        names = [PDU_NAMES.get(t, f"0x{t:02X}") for t in self.pdu_types]
        last = names[-1] if names else "nothing"
        return f"{last}, then closed" if self.closed else f"{last}, still open"


def read_exact(sock: socket.socket, count: int) -> bytes:
    data = bytearray()
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data.extend(chunk)
    return bytes(data)


def read_pdu(sock: socket.socket) -> bytes:
    header = read_exact(sock, 6)
    return header + read_exact(sock, struct.unpack(">L", header[2:6])[0])


def command_status(command: bytes) -> int | None:
    """The Status (0000,0900) of a DIMSE command set (implicit VR little endian)."""
    try:
        ds: Dataset = read_dataset(BytesIO(command), is_implicit_VR=True, is_little_endian=True)
        return int(ds.Status) if "Status" in ds else None
    except Exception:
        return None


class Conversation:
    """One raw connection to the server: send PDUs, read whole PDUs, note the outcome."""

    def __init__(self, port: int, timeout: float = 10.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.reply = Reply()
        self._command = bytearray()
        self._start = time.monotonic()

    def __enter__(self) -> Conversation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            self.reply.closed = True
            return False

    def read(self) -> bytes | None:
        """The next PDU, or None once the server has closed."""
        if self.reply.closed:
            return None
        try:
            data = read_pdu(self.sock)
        except (ConnectionError, OSError):
            self.reply.closed = True
            return None
        self.reply.pdu_types.append(data[0])
        if data[0] == 4:
            for _, control, value in pdvs(data):
                if control & 1:
                    self._command.extend(value)
                    if control & 2:
                        status = command_status(bytes(self._command))
                        self._command.clear()
                        if status is not None:
                            self.reply.statuses.append(status)
        return data

    def read_until_final(self) -> Reply:
        """Answers until a final (non-pending) DIMSE status, an abort, or the close."""
        while (data := self.read()) is not None:
            if data[0] in (3, 6, 7):
                break
            if data[0] == 4 and self.reply.statuses and self.reply.statuses[-1] not in (0xFF00, 0xFF01):
                break
        return self.reply

    def finish(self) -> Reply:
        """Half-close and read until the server closes: a server that never does has hung."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        while self.read() is not None:
            pass
        self.reply.seconds = time.monotonic() - self._start
        return self.reply


# --- mutations -----------------------------------------------------------------------------

Mutation = Callable[[random.Random, bytes], bytes]


def _flip(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(len(out))
        out[i] ^= 1 << rng.randrange(8)
    return bytes(out)


def _set_bytes(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        out[rng.randrange(len(out))] = rng.choice((0x00, 0xFF, 0x7F, 0x80, rng.randrange(256)))
    return bytes(out)


def _truncate(rng: random.Random, data: bytes) -> bytes:
    return data[: rng.randrange(len(data))]


def _insert(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data) + 1)
    return data[:i] + rng.randbytes(rng.randint(1, 64)) + data[i:]


def _delete(rng: random.Random, data: bytes) -> bytes:
    i = rng.randrange(len(data))
    return data[:i] + data[i + rng.randint(1, 32) :]


def _pdu_length(rng: random.Random, data: bytes) -> bytes:
    actual = len(data) - 6
    value = rng.choice((0, 1, actual - 1, actual + 1, actual * 2, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF))
    return data[:2] + struct.pack(">L", max(0, min(value, 0xFFFFFFFF))) + data[6:]


def _pdu_type(rng: random.Random, data: bytes) -> bytes:
    return bytes([rng.choice((0, 1, 2, 3, 4, 5, 6, 7, 8, 0x40, 0xFF))]) + data[1:]


def _inner_length(rng: random.Random, data: bytes) -> bytes:
    """Corrupt a 2- or 4-byte length inside the body (items, PDVs, elements)."""
    if len(data) < 12:
        return _flip(rng, data)
    i = rng.randrange(6, len(data) - 4)
    width = rng.choice((2, 4))
    value = rng.choice((0, 1, 0xFFFF, 0xFFFFFFFF, rng.randrange(1 << (8 * width))))
    return data[:i] + (value & ((1 << (8 * width)) - 1)).to_bytes(width, "big") + data[i + width :]


def _garbage(rng: random.Random, data: bytes) -> bytes:
    return data[:6] + rng.randbytes(len(data) - 6)


MUTATIONS: dict[str, Mutation] = {
    "flip": _flip,
    "set": _set_bytes,
    "truncate": _truncate,
    "insert": _insert,
    "delete": _delete,
    "pdu-length": _pdu_length,
    "pdu-type": _pdu_type,
    "inner-length": _inner_length,
    "garbage-body": _garbage,
}


def cases(sessions: list[Session], count: int, seed: int) -> Iterator[tuple[str, Session, int, bytes]]:
    """``count`` mutated PDUs: (mutation name, session, index of the PDU, mutated bytes)."""
    rng = random.Random(seed)
    names = sorted(MUTATIONS)
    for _ in range(count):
        session = rng.choice(sessions)
        index = rng.randrange(len(session.pdus))
        name = rng.choice(names)
        yield name, session, index, MUTATIONS[name](rng, session.pdus[index])
