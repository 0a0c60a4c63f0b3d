"""Chain events into PostgreSQL: a non-blocking batched writer with a durable local spool.

``ChainWriter.emit_record`` (what :class:`~chaintrade.chain.ChainContext` calls) only
appends the event's list to a deque: no lock, no serialization on the caller's thread. A
background thread gives each batch its ids, encodes it to JSON lines in one msgspec call
and journals them. Then it sends the batch one of two ways, both exactly once
(``chain_history`` is keyed by ``event_id``):

- the JSON way: the lines are COPYed into a temporary staging table and ``INSERT ... ON
  CONFLICT DO NOTHING`` fills ``chain_history`` from it (casts truncate over-long names).
  PostgreSQL takes the JSON apart: the least CPU in this process (~0.2 µs per event), the
  most in the database. Small batches, the ones that a refused binary COPY falls back to,
  and spooled events go this way.
- binary ``COPY`` straight into ``chain_history`` (typed columns; PostgreSQL parses only
  the four ``jsonb`` values): about 1.7x the rows per second of the JSON way, for ~2 µs
  more CPU per event here. Full batches (``binary_min_batch`` events, by default
  ``batch_size``: the writer is falling behind) go this way. A batch that meets a stored
  id (an event emitted twice), an over-long name or any row the binary path refuses is
  rolled back whole and sent the JSON way instead.

While the database is unreachable, batches are appended to segment files under
``<spool_dir>/chain_events`` (one ``<crc32> <json>`` line per event, fsync'd) and replayed
in order when it answers again. Spool lines that fail their checksum are moved to
``quarantine.jsonl``; events the database refuses as invalid data go to
``rejected.jsonl``. Both are counted.

Journal fsync policy (``journal_fsync``, setting ``CHAINTRADE_CHAIN_JOURNAL_FSYNC``), for
the batch in flight between the thread taking it and the database committing it:

- ``True`` (default): each batch's journal block is fsync'd before the batch is sent, so
  it survives a crash of the process *and* of the OS (power loss).
- ``False``: the block is only written to the OS (its page cache) before the batch is
  sent. That survives ``kill -9`` and any crash of the process, not an OS crash or power
  loss while the batch is in flight. Batches the database did not take are fsync'd before
  they count as spooled either way, so what ``flush()`` acknowledges is durable under
  both policies.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import struct
import sys
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import compress, repeat, starmap
from operator import is_, itemgetter, setitem
from pathlib import Path
from typing import IO, Any

import msgspec
import psycopg
from psycopg import pq
from psycopg.adapt import Dumper
from psycopg.rows import dict_row

from chaintrade.chain import ChainEvent, Record, new_id_int
from chaintrade.db import connect
from chaintrade.errors import ChaintradeError, DataValidationError
from chaintrade.settings import get_settings

log = logging.getLogger(__name__)

_COLUMNS = (
    'event_id, chain_id, request_id, service_name, event_type, "timestamp", duration_ms, '
    "endpoint, user_id, metadata, error_context, dependencies, performance_metrics"
)
# Fresh batches: one binary COPY of the Record lists as they are (see copy_records).
_COPY_BINARY = f"COPY chain_history ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_BINARY_TYPES = [  # as oids: set_types resolves names in Python on every call
    psycopg.adapters.types[name].oid
    for name in (
        *("uuid", "uuid", "uuid", "text", "text", "timestamptz", "float8", "text", "text"),
        *("jsonb", "jsonb", "jsonb", "jsonb"),
    )
]

# The staging table holds one event per row as the JSON array of its Record (see
# chaintrade.chain.Record). CSV with a delimiter and quote that JSON text never contains
# (msgspec escapes every control character) passes each line through verbatim.
_CREATE_STAGE = (
    "CREATE TEMP TABLE IF NOT EXISTS chain_history_json (doc jsonb NOT NULL) ON COMMIT DELETE ROWS"
)
_COPY_STAGE = (
    "COPY chain_history_json (doc) FROM STDIN (FORMAT csv, DELIMITER E'\\x1f', QUOTE E'\\x1e')"
)
# Explicit varchar(n) casts truncate over-long strings instead of failing the batch.
_INSERT_FROM_STAGE = f"""
INSERT INTO chain_history ({_COLUMNS})
SELECT (doc->>0)::uuid, (doc->>1)::uuid, (doc->>2)::uuid,
    (doc->>3)::varchar(100), (doc->>4)::varchar(50),
    TIMESTAMPTZ 'epoch' + ((doc->>5)::bigint / 1000) * INTERVAL '1 microsecond',
    (doc->>6)::float8, (doc->>7)::varchar(255), (doc->>8)::varchar(100),
    coalesce(nullif(doc->9, 'null'), '{{}}'), nullif(doc->10, 'null'),
    coalesce(nullif(doc->11, 'null'), '[]'), coalesce(nullif(doc->12, 'null'), '{{}}')
FROM chain_history_json
ON CONFLICT DO NOTHING
"""
_SPOOL_SUBDIR = "chain_events"
_SEGMENT_GLOB = "seg-*.jsonl"
_SEGMENT_MAX_BYTES = 8 * 1024 * 1024
_REPLAY_CHUNK = 5000
_JOURNAL_ROTATE_BYTES = 4 * 1024 * 1024
_LINE_OVERHEAD = 10  # "<8 hex> " and "\n" around each payload
_ID_RANDOM_BITS = (1 << 32) - 1
_FIRST = itemgetter(0)


# ------------------------------------------------------------------ serialization


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, set | frozenset):
        return list(obj)
    return str(obj)


def _plain(obj: Any) -> Any:
    """A JSON-safe copy: non-finite floats become null, keys become strings."""
    if isinstance(obj, msgspec.Struct):
        obj = msgspec.structs.asdict(obj)
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, str | bytes):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, str | int | float | bool):
        return obj
    if isinstance(obj, datetime):
        return obj.isoformat()
    return _json_default(obj)


# msgspec writes UUIDs and datetimes as strings and non-finite floats as null.
_ENCODER = msgspec.json.Encoder(enc_hook=_json_default)
_ENCODE_ERRORS = (TypeError, ValueError, OverflowError, UnicodeError, msgspec.EncodeError)


def encode_records(records: Sequence[Record]) -> tuple[bytes, list[tuple[Record, str]]]:
    """Newline-delimited JSON of the records (one line each) and those that cannot be encoded.

    One msgspec call encodes the batch; only when it fails is each record retried alone
    (then through a plain-Python copy that stringifies odd keys and values).
    """
    try:
        return _ENCODER.encode_lines(records), []
    except _ENCODE_ERRORS:
        pass
    good: list[bytes] = []
    bad: list[tuple[Record, str]] = []
    for record in records:
        try:
            good.append(_ENCODER.encode(record))
        except _ENCODE_ERRORS:
            try:
                good.append(_ENCODER.encode(_plain(record)))
            except _ENCODE_ERRORS as exc:
                bad.append((record, f"{type(exc).__name__}: {exc}"))
    return _join(good), bad


def _join(payloads: Sequence[bytes]) -> bytes:
    return b"\n".join(payloads) + b"\n" if payloads else b""


def _split(blob: bytes) -> list[bytes]:
    lines = blob.split(b"\n")
    lines.pop()  # after the last newline
    return lines


def event_payloads(events: Iterable[ChainEvent]) -> list[bytes]:
    """The JSON payloads of events; raises ``DataValidationError`` for one that cannot be."""
    blob, bad = encode_records([e.record() for e in events])
    if bad:
        raise DataValidationError(f"{len(bad)} event(s) cannot be serialized: {bad[0][1]}")
    return _split(blob)


_LINE = b"%08x %s\n".__mod__


def frame(payloads: Sequence[bytes]) -> bytes:
    """Spool lines: ``<crc32 hex> <payload>\\n`` per payload (all in C-level loops)."""
    return b"".join(map(_LINE, zip(map(zlib.crc32, payloads), payloads, strict=True)))


def _unframe(line: bytes) -> bytes:
    """The payload of one spool line; raises ValueError with a reason when it is corrupt."""
    if not line.endswith(b"\n"):
        raise ValueError("truncated line")
    crc, sep, payload = line[:-1].partition(b" ")
    if not sep or len(crc) != 8:
        raise ValueError("no checksum")
    try:
        expected = int(crc, 16)
    except ValueError:
        raise ValueError("no checksum") from None
    if expected != zlib.crc32(payload):
        raise ValueError("checksum mismatch")
    return payload


def _block(blob: bytes, count: int) -> bytes:
    """A journal block: the payload lines as they are, then ``#<crc32 of them> <count>``.

    One checksum per batch costs nothing per event; replay checks it over the block.
    """
    return blob + b"#%08x %d\n" % (zlib.crc32(blob), count)


def _parse_segment(lines: Sequence[bytes]) -> tuple[list[bytes], list[tuple[int, str, bytes]]]:
    """Payloads of a segment's lines, and the corrupt lines as (line number, reason, line).

    Framed lines (``<crc> <payload>``) are checked one by one; bare payload lines are a
    journal block, checked by the ``#`` trailer that follows them. Bare lines with no
    trailer are a journal torn by a crash while it was written: whole lines are kept
    (the database validates them), a last line without its newline is quarantined.
    """
    good: list[bytes] = []
    bad: list[tuple[int, str, bytes]] = []
    block: list[tuple[int, bytes]] = []
    for number, line in enumerate(lines, start=1):
        if line.startswith(b"["):
            block.append((number, line))
        elif line.startswith(b"#"):
            crc, _, count = line[1:].strip().partition(b" ")
            data = b"".join(x for _, x in block)
            try:
                ok = int(crc, 16) == zlib.crc32(data) and int(count) == len(block)
            except ValueError:
                ok = False
            if ok:
                good.extend(x[:-1] for _, x in block)
            else:
                bad.extend((n, "block checksum mismatch", x) for n, x in block)
            block = []
        else:
            try:
                good.append(_unframe(line))
            except ValueError as exc:
                bad.append((number, str(exc), line))
    for number, line in block:
        if line.endswith(b"\n"):
            good.append(line[:-1])
        else:
            bad.append((number, "truncated line", line))
    return good, bad


# ----------------------------------------------------------------- database writes


_UUID = uuid.UUID
_fromhex = bytes.fromhex
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01, where binary timestamps count from
_pack_int8 = struct.Struct("!q").pack
_encode_json = _ENCODER.encode


class _RecordUuidDumper(Dumper):
    """Binary ``uuid`` of a Record's id: a UUID, or a string (the writer's ids are 32 hex)."""

    format = pq.Format.BINARY
    oid = psycopg.adapters.types["uuid"].oid

    def dump(self, obj: Any) -> bytes:
        if type(obj) is _UUID:
            return obj.bytes
        return _fromhex(obj) if len(obj) == 32 else _UUID(obj).bytes


class _RecordTimestampDumper(Dumper):
    """Binary ``timestamptz`` of a Record's nanoseconds since the Unix epoch."""

    format = pq.Format.BINARY
    oid = psycopg.adapters.types["timestamptz"].oid

    def dump(self, obj: Any) -> bytes:
        return _pack_int8(obj // 1000 - _PG_EPOCH_US)


class _RecordJsonbDumper(Dumper):
    """Binary ``jsonb`` (version byte 1, then the text) of a value, encoded by msgspec."""

    format = pq.Format.BINARY
    oid = psycopg.adapters.types["jsonb"].oid

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + _encode_json(obj)


_RECORD_DUMPERS = (_RecordUuidDumper, _RecordTimestampDumper, _RecordJsonbDumper)
# What makes the binary path refuse a batch (that then goes the idempotent JSON way): a
# stored id or a NULL where the table has none (IntegrityError), an over-long or invalid
# value (DataError), or a value of a type the dumpers above do not take.
_BINARY_REFUSALS = (
    psycopg.DataError,
    psycopg.IntegrityError,
    TypeError,
    ValueError,
    AttributeError,
    OverflowError,
    struct.error,
    msgspec.EncodeError,
)


def copy_records(conn: psycopg.Connection[Any], records: Sequence[Record]) -> None:
    """Binary COPY of records straight into ``chain_history``, all or nothing.

    Raises (and writes none of them) when any id is already stored or any value does not
    fit; :func:`write_records` then takes the idempotent way. In an autocommit connection
    the COPY is its own transaction (two round trips); otherwise it runs in a
    (sub)transaction of its own.
    """
    if not records:
        return
    alone = conn.autocommit and conn.info.transaction_status == pq.TransactionStatus.IDLE
    with contextlib.nullcontext() if alone else conn.transaction(), conn.cursor() as cur:
        for dumper in _RECORD_DUMPERS:  # by oid only: what set_types looks up, nothing else
            cur.adapters.register_dumper(None, dumper)
        with cur.copy(_COPY_BINARY) as copy:
            copy.set_types(_BINARY_TYPES)
            deque(map(copy.write_row, records), maxlen=0)  # a C-level loop


def _copied(conn: psycopg.Connection[Any], records: Sequence[Record]) -> bool:
    """:func:`copy_records`; False when it refused the batch (nothing of it written)."""
    try:
        copy_records(conn, records)
    except _BINARY_REFUSALS:
        return False
    return True


def write_records(
    conn: psycopg.Connection[Any], records: Sequence[Record], blob: bytes | None = None
) -> int:
    """Write records (ids set) exactly once; return the rows newly inserted.

    Binary COPY first (:func:`copy_records`); when it refuses the batch, the JSON lines
    (``blob``, or encoded here) go through :func:`write_ndjson`, which skips stored ids.
    """
    if _copied(conn, records):
        return len(records)
    if blob is None:
        blob, bad = encode_records(records)
        if bad:
            raise DataValidationError(f"{len(bad)} event(s) cannot be serialized: {bad[0][1]}")
    return write_ndjson(conn, blob)


def write_ndjson(conn: psycopg.Connection[Any], blob: bytes, *, create_stage: bool = True) -> int:
    """COPY newline-delimited JSON records into ``chain_history`` in one transaction.

    Returns the rows inserted. Idempotent: an ``event_id`` already stored is skipped
    (``ON CONFLICT DO NOTHING``). ``create_stage=False`` when this connection has the
    temporary staging table already (one round trip less).
    """
    if not blob:
        return 0
    outer = conn.info.transaction_status != pq.TransactionStatus.IDLE
    with conn.transaction(), conn.cursor() as cur:
        if create_stage:
            cur.execute(_CREATE_STAGE)
        with cur.copy(_COPY_STAGE) as copy:
            copy.write(blob)
        cur.execute(_INSERT_FROM_STAGE)
        inserted = max(cur.rowcount, 0)
        if outer:  # ON COMMIT DELETE ROWS fires only when the caller commits
            cur.execute("DELETE FROM chain_history_json")
    return inserted


def write_payloads(conn: psycopg.Connection[Any], payloads: Sequence[bytes]) -> int:
    """:func:`write_ndjson` of single-line JSON payloads."""
    return write_ndjson(conn, _join(payloads))


def write_events(conn: psycopg.Connection[Any], events: Iterable[ChainEvent]) -> int:
    """Write events synchronously (idempotent by ``event_id``); return rows newly inserted."""
    return write_records(conn, [e.record() for e in events])


def _write_isolating(
    conn: psycopg.Connection[Any],
    payloads: Sequence[bytes],
    reject: Callable[[bytes, str], None],
    blob: bytes | None = None,
    *,
    create_stage: bool = True,
) -> int:
    """Write payloads (or ``blob``, the same as NDJSON); on invalid data, bisect and hand
    the offending ones to ``reject``.

    Connection errors and other failures propagate (the caller spools the payloads).
    """
    try:
        return write_ndjson(
            conn, _join(payloads) if blob is None else blob, create_stage=create_stage
        )
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        if blob is not None:
            return _write_isolating(conn, _split(blob), reject)
        if len(payloads) == 1:
            reject(payloads[0], f"{type(exc).__name__}: {exc}".strip())
            return 0
        mid = len(payloads) // 2
        return _write_isolating(conn, payloads[:mid], reject) + _write_isolating(
            conn, payloads[mid:], reject
        )


# ------------------------------------------------------------------------- spool

if sys.platform == "win32":  # pragma: no cover - exercised on the Windows agent host
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            return False


def _fsync_dir(path: Path) -> None:
    if sys.platform == "win32":  # pragma: no cover
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _append_durably(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


@dataclass(frozen=True, slots=True)
class ReplayResult:
    """What one pass over the spool did."""

    replayed: int = 0
    corrupt: int = 0
    rejected: int = 0
    segments: int = 0
    skipped_locked: int = 0


@dataclass(slots=True)
class Journal:
    """The segment a writer journals its batches to before it sends them (locked)."""

    path: Path
    fh: IO[bytes]
    size: int
    synced: bool = True  # every block written so far is fsync'd


class Spool:
    """Append-only segment files of event payloads; each segment is locked by its writer.

    Bounded: segments together stay under ``max_bytes``. When a new write would cross
    it, ``full_policy`` decides: ``"drop_newest"`` (default) refuses the new events
    (``append`` returns how many it kept) so the oldest evidence is kept and replayed in
    order; ``"drop_oldest"`` deletes the oldest unlocked segments until the new ones fit.
    Either way the events lost are returned to the caller to count.
    """

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 1 << 30,
        full_policy: str = "drop_newest",
    ) -> None:
        if full_policy not in ("drop_newest", "drop_oldest"):
            raise ValueError(f"unknown spool full_policy {full_policy!r}")
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.quarantine_path = directory / "quarantine.jsonl"
        self.rejected_path = directory / "rejected.jsonl"
        self.max_bytes = max_bytes
        self.full_policy = full_policy
        self._fh: IO[bytes] | None = None
        self._bytes = 0
        self._seq = 0
        self._others = 0  # bytes of the segments not open here, as of the last scan
        self._journal: Journal | None = None
        self.rescan()

    def rescan(self) -> int:
        """Re-measure the segments on disk (other processes share the folder); total bytes."""
        total = 0
        for path in self.segments():
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        self._others = total - (self._bytes if self._fh is not None else 0)
        return self.size

    @property
    def size(self) -> int:
        """Bytes of spooled segments (as of the last scan plus this process's writes)."""
        return self._others + (self._bytes if self._fh is not None else 0)

    def _make_room(self, needed: int) -> int:
        """Free ``needed`` bytes under the cap if the policy allows; events deleted."""
        if self.size + needed <= self.max_bytes:
            return 0
        self.rescan()
        dropped = 0
        if self.full_policy == "drop_oldest":
            for path in self.segments():
                if self.size + needed <= self.max_bytes:
                    break
                dropped += self._delete_unlocked(path)
        return dropped

    def _delete_unlocked(self, path: Path) -> int:
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return 0
        try:
            if not _try_lock(fd):
                return 0
            with os.fdopen(os.dup(fd), "rb") as fh:
                data = fh.read()
            path.unlink(missing_ok=True)
        finally:
            os.close(fd)
        self._others -= len(data)
        lost = data.count(b"\n")
        log.error("spool full: deleted %s (%d event(s)) to make room", path.name, lost)
        return lost

    def append(self, payloads: Sequence[bytes]) -> tuple[int, int]:
        """Append payloads to the current segment and fsync it.

        Returns ``(kept, dropped)``: payloads kept (the oldest that fit when the spool
        is full) and events of older segments deleted to make room (``drop_oldest``).
        """
        if not payloads:
            return 0, 0
        needed = sum(map(len, payloads)) + _LINE_OVERHEAD * len(payloads)
        dropped = self._make_room(needed)
        kept = len(payloads)
        if self.size + needed > self.max_bytes:  # keep the oldest payloads that fit
            room = self.max_bytes - self.size
            kept = 0
            while kept < len(payloads) and room >= len(payloads[kept]) + _LINE_OVERHEAD:
                room -= len(payloads[kept]) + _LINE_OVERHEAD
                kept += 1
            if kept == 0:
                return 0, dropped
        data = frame(payloads[:kept] if kept < len(payloads) else payloads)
        if self._fh is None or self._bytes >= _SEGMENT_MAX_BYTES:
            self.close_segment()
            self._open_segment()
        assert self._fh is not None
        self._fh.write(data)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._bytes += len(data)
        return kept, dropped

    def journal(self, blob: bytes, count: int, *, fsync: bool = True) -> Journal | None:
        """Append a batch (NDJSON of ``count`` events) as one checksummed block to this
        spool's journal segment (created and locked on first use) before the batch goes to
        the database; fsync it unless ``fsync`` is False (written to the OS only: safe from
        a crash of the process, not of the OS; see the module's fsync policy).

        ``None`` when the spool is full (the events then go unjournaled). Finish with
        :meth:`release`. Blocks already committed stay in the segment until it is rotated
        or closed; a replay after a crash writes them again, and the database ignores them.
        """
        data = _block(blob, count)
        if self.size + len(data) > self.max_bytes and (self.rescan() + len(data) > self.max_bytes):
            return None
        journal = self._journal
        if journal is None:
            path, fd = self._create_segment()
            journal = self._journal = Journal(path, os.fdopen(fd, "ab"), 0)
        journal.fh.write(data)
        journal.fh.flush()
        if fsync:
            os.fsync(journal.fh.fileno())
        journal.synced = fsync
        journal.size += len(data)
        self._others += len(data)
        return journal

    def release(self, journal: Journal, *, keep: bool) -> None:
        """After the journaled batch: committed (``keep=False``; the segment is deleted
        once it is big) or not (``keep=True``: the segment is fsync'd if it was not, and
        unlocked for replay)."""
        if keep:
            if not journal.synced:
                os.fsync(journal.fh.fileno())
            journal.fh.close()
            self._journal = None
        elif journal.size >= min(_JOURNAL_ROTATE_BYTES, self.max_bytes // 4):
            self.close_journal()

    def close_journal(self) -> None:
        """Delete the journal segment, every block of which is committed."""
        journal, self._journal = self._journal, None
        if journal is not None:
            # No directory fsync: should the unlink be lost in a crash, replay is a no-op.
            journal.path.unlink(missing_ok=True)
            self._others -= journal.size
            journal.fh.close()

    def _create_segment(self) -> tuple[Path, int]:
        self._seq += 1
        name = f"seg-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.jsonl"
        final = self.directory / name
        if sys.platform == "win32":  # pragma: no cover
            fd = os.open(final, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            _try_lock(fd)
        else:
            # Lock under a name replayers ignore, then publish: no one sees it unlocked.
            tmp = self.directory / f".{name}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            _try_lock(fd)
            os.rename(tmp, final)
            _fsync_dir(self.directory)
        return final, fd

    def _open_segment(self) -> None:
        _, fd = self._create_segment()
        self._fh = os.fdopen(fd, "ab")
        self._bytes = 0

    def close_segment(self) -> None:
        """Close (and unlock) the segment being written, so it can be replayed."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._others += self._bytes
            self._bytes = 0

    def segments(self) -> list[Path]:
        """Segment files in the order they were written."""
        return sorted(self.directory.glob(_SEGMENT_GLOB))

    def reject(self, payload: bytes, reason: str) -> None:
        """Keep an event the database refused, with the reason, in ``rejected.jsonl``."""
        line = payload.decode("utf-8", errors="replace")
        record = {"reason": reason, "at": datetime.now(UTC).isoformat(), "line": line}
        _append_durably(self.rejected_path, (json.dumps(record) + "\n").encode("utf-8"))

    def replay(self, conn: psycopg.Connection[Any]) -> ReplayResult:
        """Write every unlocked segment to the database in order, then delete it.

        Idempotent: a crash between the insert and the delete replays rows that the
        database then ignores. Raises on connection errors (the segment stays).
        """
        replayed = corrupt = rejected = segments = skipped = 0
        rejects: list[tuple[bytes, str]] = []
        for path in self.segments():
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                if not _try_lock(fd):
                    skipped += 1  # a live writer is still appending to it
                    continue
                if os.fstat(fd).st_nlink == 0:
                    continue  # another replayer finished it meanwhile
                with os.fdopen(os.dup(fd), "rb") as fh:
                    lines = fh.readlines()
                rows, corrupt_lines = _parse_segment(lines)
                bad = [
                    {
                        "segment": path.name,
                        "line_no": number,
                        "reason": reason,
                        "raw": line.decode("utf-8", errors="replace"),
                    }
                    for number, reason, line in corrupt_lines
                ]
                rejects.clear()
                for start in range(0, len(rows), _REPLAY_CHUNK):
                    chunk = rows[start : start + _REPLAY_CHUNK]
                    _write_isolating(conn, chunk, lambda r, why: rejects.append((r, why)))
                for row, why in rejects:
                    self.reject(row, why)
                if bad:
                    data = "".join(json.dumps(b) + "\n" for b in bad).encode("utf-8")
                    _append_durably(self.quarantine_path, data)
                    log.warning("spool %s: %d corrupt line(s) quarantined", path.name, len(bad))
                replayed += len(rows) - len(rejects)
                rejected += len(rejects)
                corrupt += len(bad)
                segments += 1
                if sys.platform != "win32":
                    path.unlink(missing_ok=True)
                    _fsync_dir(self.directory)
            finally:
                os.close(fd)
            if sys.platform == "win32":  # pragma: no cover - cannot unlink an open file
                path.unlink(missing_ok=True)
        self.rescan()
        return ReplayResult(replayed, corrupt, rejected, segments, skipped)


def _spool_directory(spool_dir: Path | None) -> Path:
    return (spool_dir or get_settings().spool_dir) / _SPOOL_SUBDIR


def replay_spool(url: str, spool_dir: Path | None = None) -> ReplayResult:
    """Replay spooled chain events into the database at ``url`` (idempotent)."""
    with connect(url, autocommit=True) as conn:
        return Spool(_spool_directory(spool_dir)).replay(conn)


# ------------------------------------------------------------------------ writer


@dataclass(frozen=True, slots=True)
class WriterStats:
    """A snapshot of a writer's counters (events unless named otherwise)."""

    emitted: int
    written: int
    spooled: int
    replayed: int
    corrupt: int
    rejected: int
    dropped: int
    queued: int
    online: bool
    spool_full: int = 0
    unjournaled: int = 0
    spool_bytes: int = 0


class ChainWriter:
    """The hot-path ``EventSink``: ``emit`` enqueues; a thread writes batches or spools them.

    ``url`` is a URL or a callable returning one (asked again on every reconnect).
    Events left in ``<spool_dir>/chain_events`` by earlier runs are replayed first.
    ``emit`` never blocks on the database; beyond ``max_queue`` queued events new ones
    are dropped and counted (the thread spools at disk speed, so this means overload).

    Durability: with ``journal`` (default) every batch is written to its own spool segment
    before it is sent (fsync'd too unless ``journal_fsync`` is False; None reads the
    ``chain_journal_fsync`` setting; see the module's fsync policy), and the segment is
    deleted once the database has committed it, so a crash (even ``kill -9``) at any
    point after the writer thread took a batch loses nothing: the next writer (or
    :func:`replay_spool`) replays it and the ``event_id`` key drops what had already
    landed. ``flush()`` returning True is the acknowledgement; events emitted but not yet
    taken by the thread (at most ``flush_interval_s`` or ``batch_size`` events) live only
    in memory. The spool is capped at ``spool_max_bytes`` (policy: see :class:`Spool`);
    events refused by a full spool are counted in ``dropped`` and ``spool_full``, batches
    sent unjournaled in ``unjournaled``.

    Batches of at least ``binary_min_batch`` events (default ``batch_size``) are sent by
    binary COPY, smaller ones the JSON way (see the module docstring): the traced process
    pays least while the database keeps up, the database takes most when it does not.
    """

    def __init__(
        self,
        url: str | Callable[[], str],
        *,
        spool_dir: Path | None = None,
        batch_size: int = 5000,
        flush_interval_s: float = 0.2,
        max_queue: int = 100_000,
        retry_interval_s: float = 1.0,
        max_retry_interval_s: float = 30.0,
        connect_timeout_s: float = 3.0,
        max_batch: int = 20_000,
        journal: bool = True,
        journal_fsync: bool | None = None,
        binary_min_batch: int | None = None,
        spool_max_bytes: int = 1 << 30,
        spool_full_policy: str = "drop_newest",
    ) -> None:
        self._url: Callable[[], str] = url if callable(url) else (lambda: url)
        self._spool = Spool(
            _spool_directory(spool_dir), max_bytes=spool_max_bytes, full_policy=spool_full_policy
        )
        self._journal = journal
        self._journal_fsync = (
            get_settings().chain_journal_fsync if journal_fsync is None else journal_fsync
        )
        self._max_batch = max(max_batch, batch_size)
        self._binary_min_batch = batch_size if binary_min_batch is None else binary_min_batch
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._max_queue = max_queue
        self._retry_interval_s = retry_interval_s
        self._max_retry_interval_s = max_retry_interval_s
        self._connect_timeout_s = connect_timeout_s

        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._woken = False  # set by emitters with _wake, cleared by the thread
        self._queue: deque[Record] = deque()
        self._stopping = False
        self._flush_requested = False
        self._taken = 0  # records the thread took from the queue
        self._handled = 0  # ... and finished with (written, spooled, rejected or dropped)
        self._dropped_at_emit = 0
        self._counts = dict.fromkeys(
            (
                "written",
                "spooled",
                "replayed",
                "corrupt",
                "rejected",
                "dropped",
                "spool_full",
                "unjournaled",
            ),
            0,
        )

        # Owned by the writer thread only.
        self._conn: psycopg.Connection[Any] | None = None
        self._online = False
        self._next_attempt = 0.0
        self._backoff = retry_interval_s
        self._spool_pending = bool(self._spool.segments())

        self._thread = threading.Thread(target=self._run, name="chain-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- hot path -------------------------------------------------------------------

    def emit_record(self, record: Record) -> None:
        """Queue one event in its wire form; returns at once (a deque append, no lock).

        The record must not change afterwards; the thread fills in ``record[0]`` (the
        event id) when it is None.
        """
        queue = self._queue
        if self._stopping or len(queue) >= self._max_queue:
            with self._lock:
                self._dropped_at_emit += 1
            return
        queue.append(record)
        if len(queue) >= self._batch_size and not self._woken:
            self._woken = True
            self._wake.set()

    def emit(self, event: ChainEvent) -> None:
        """Queue one event; returns at once."""
        self.emit_record(event.record())

    # -- control --------------------------------------------------------------------

    @property
    def stats(self) -> WriterStats:
        """A snapshot of the counters."""
        with self._lock:
            queued = len(self._queue)
            dropped = self._counts["dropped"] + self._dropped_at_emit
            return WriterStats(
                **{**self._counts, "dropped": dropped},
                emitted=self._taken + queued + self._dropped_at_emit,
                queued=queued,
                online=self._online,
                spool_bytes=self._spool.size,
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event emitted so far is written, spooled or rejected."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._taken + len(self._queue)
            self._flush_requested = True
            self._wake.set()
            while self._handled < target:
                if not self._thread.is_alive():
                    return False
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._progress.wait(remaining if remaining is not None else 1.0)
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Flush, stop the thread and close the connection and spool segment."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("chain writer did not stop within %.0f s", timeout)
        elif self._queue:  # emitted while the thread was stopping
            self._take_and_process()
            self._spool.close_segment()
            self._spool.close_journal()
            self._drop_connection()
        atexit.unregister(self.close)

    def __enter__(self) -> ChainWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writer thread --------------------------------------------------------------

    def _run(self) -> None:
        while True:
            if (
                len(self._queue) < self._batch_size
                and not self._stopping
                and not self._flush_requested
            ):
                self._wake.wait(self._flush_interval_s)
            self._wake.clear()
            self._woken = False
            stop = self._take_and_process()
            if stop:
                break
        self._spool.close_segment()
        self._spool.close_journal()
        self._drop_connection()

    def _take_and_process(self) -> bool:
        """Process one batch from the queue; True when stopping and the queue is empty."""
        with self._lock:
            n = min(len(self._queue), self._max_batch)
            batch = list(starmap(self._queue.popleft, repeat((), n)))  # a C-level loop
            self._taken += n
            if not self._queue:
                self._flush_requested = False
            stop = self._stopping and not self._queue
        try:
            self._process(batch)
        except Exception:  # never let the thread die; _process spools what it can
            log.exception("chain writer: unexpected error; %d event(s) lost", len(batch))
            self._count("dropped", len(batch))
        finally:
            with self._lock:
                self._handled += n
                self._progress.notify_all()
        return stop

    def _count(self, name: str, n: int) -> None:
        if n:
            with self._lock:
                self._counts[name] += n

    def _process(self, batch: list[Record]) -> None:
        if batch:
            # Records from ChainContext have no id yet: one new sequence number per batch,
            # its low 32 bits number the events (C-level loops: the GIL is shared with
            # the traced code).
            base = new_id_int() & ~_ID_RANDOM_BITS
            ids = map("%032x".__mod__, range(base, base + len(batch)))
            need = compress(batch, map(is_, map(_FIRST, batch), repeat(None)))
            deque(map(setitem, need, repeat(0), ids), maxlen=0)
        blob, unencodable = encode_records(batch)
        for record, reason in unencodable:
            log.warning("chain writer: unserializable event rejected: %s", reason)
            self._spool.reject(repr(record).encode("utf-8"), reason)
        self._count("rejected", len(unencodable))
        n = len(batch) - len(unencodable)
        if self._spool_pending:
            self._try_replay()
        if not n:
            return
        conn = None if self._spool_pending else self._connection()
        if conn is None:
            self._spool_payloads(_split(blob))
            return
        fsync = self._journal_fsync
        journal = self._spool.journal(blob, n, fsync=fsync) if self._journal else None
        if self._journal and journal is None:
            self._count("unjournaled", n)
        rejected: list[int] = []
        try:
            binary = not unencodable and len(batch) >= self._binary_min_batch
            if not (binary and _copied(conn, batch)):  # the JSON way
                _write_isolating(
                    conn,
                    (),
                    lambda p, why: self._reject(p, why, rejected),
                    blob,
                    create_stage=False,  # made when the connection was opened
                )
        except (psycopg.Error, ChaintradeError) as exc:
            self._went_offline(exc)
            # Events already committed are ignored on replay.
            if journal is not None:
                self._spool.release(journal, keep=True)
                self._spool_pending = True
                self._count("spooled", n)
            else:
                self._spool_payloads(_split(blob))
            return
        if journal is not None:
            self._spool.release(journal, keep=False)
        self._count("written", n - len(rejected))

    def _reject(self, payload: bytes, reason: str, sink: list[int]) -> None:
        log.warning("chain writer: event rejected by the database: %s", reason)
        self._spool.reject(payload, reason)
        self._count("rejected", 1)
        sink.append(1)

    def _spool_payloads(self, payloads: list[bytes]) -> None:
        kept, dropped = self._spool.append(payloads)
        self._spool_pending = True
        self._count("spooled", kept)
        refused = len(payloads) - kept
        if refused:
            log.error(
                "chain writer: spool full (%d bytes cap): %d event(s) dropped",
                self._spool.max_bytes,
                refused,
            )
        self._count("spool_full", refused + dropped)
        self._count("dropped", refused + dropped)

    def _try_replay(self) -> None:
        conn = self._connection()
        if conn is None:
            return
        self._spool.close_segment()
        try:
            result = self._spool.replay(conn)
        except (psycopg.Error, ChaintradeError) as exc:
            self._went_offline(exc)
            return
        self._count("replayed", result.replayed)
        self._count("corrupt", result.corrupt)
        self._count("rejected", result.rejected)
        # Segments still locked belong to other live writers, which replay them.
        self._spool_pending = False
        if result.segments:
            log.info(
                "chain writer: replayed %d spooled event(s) from %d segment(s)",
                result.replayed,
                result.segments,
            )

    def _connection(self) -> psycopg.Connection[Any] | None:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if time.monotonic() < self._next_attempt:
            return None
        try:
            self._conn = connect(
                self._url(), autocommit=True, connect_timeout_s=self._connect_timeout_s
            )
            self._conn.execute(_CREATE_STAGE)  # for the session: batches skip it
        except Exception as exc:
            self._went_offline(exc)
            return None
        if not self._online:
            log.info("chain writer: database reachable")
        self._online = True
        self._backoff = self._retry_interval_s
        return self._conn

    def _went_offline(self, exc: BaseException) -> None:
        if self._online or self._next_attempt == 0.0:
            log.warning("chain writer: database unavailable, spooling events: %s", exc)
        self._online = False
        self._drop_connection()
        self._next_attempt = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, self._max_retry_interval_s)

    def _drop_connection(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                self._conn.close()
            self._conn = None


# ------------------------------------------------------------------------- reads


def count_chains(url: str, since: datetime | None = None) -> int:
    """Number of distinct chains in ``chain_history`` (with events at or after ``since``)."""
    query = "SELECT count(DISTINCT chain_id) FROM chain_history WHERE timestamp >= %s"
    with connect(url) as conn:
        row = conn.execute(query, (since or datetime(1970, 1, 1, tzinfo=UTC),)).fetchone()
        return int(row[0]) if row else 0


def count_events(url: str) -> int:
    """Number of rows in ``chain_history``."""
    with connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM chain_history").fetchone()
        return int(row[0]) if row else 0


def chain_events(url: str, chain_id: uuid.UUID | str) -> list[dict[str, Any]]:
    """The events of one chain in time order, as dicts (JSON columns decoded)."""
    with connect(url) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            'SELECT event_id, chain_id, request_id, service_name, event_type, "timestamp", '
            "duration_ms, endpoint, user_id, metadata, error_context, dependencies, "
            "performance_metrics, created_at FROM chain_history WHERE chain_id = %s "
            'ORDER BY "timestamp", created_at, event_id',
            (chain_id if isinstance(chain_id, uuid.UUID) else uuid.UUID(str(chain_id)),),
        )
        return cur.fetchall()


__all__ = [
    "ChainWriter",
    "Journal",
    "ReplayResult",
    "Spool",
    "WriterStats",
    "chain_events",
    "copy_records",
    "count_chains",
    "count_events",
    "encode_records",
    "event_payloads",
    "frame",
    "replay_spool",
    "write_events",
    "write_ndjson",
    "write_payloads",
    "write_records",
]
