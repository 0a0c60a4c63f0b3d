"""Chain events into PostgreSQL: a non-blocking batched writer with a durable local spool.

``ChainWriter.emit`` only appends to an in-memory queue; a background thread writes
batches with binary COPY into a temporary staging table and ``INSERT ... ON CONFLICT DO
NOTHING`` into ``chain_history`` (keyed by ``event_id``, so replays are idempotent).
While the database is unreachable, batches are appended to segment files under
``<spool_dir>/chain_events`` (one ``<crc32> <json>`` line per event, fsync'd) and replayed
in order when it answers again. Spool lines that fail their checksum or do not parse are
moved to ``quarantine.jsonl``; events the database refuses as invalid data go to
``rejected.jsonl``. Both are counted.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import sys
import threading
import time
import uuid
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import psycopg
from psycopg import pq
from psycopg.adapt import Dumper
from psycopg.rows import dict_row

from chaintrade.chain import ChainEvent
from chaintrade.db import connect
from chaintrade.errors import ChaintradeError
from chaintrade.settings import get_settings

log = logging.getLogger(__name__)

# One staged chain_history row: the JSON columns are already JSON text.
Row = tuple[
    uuid.UUID,
    uuid.UUID,
    uuid.UUID,
    str,
    str,
    datetime,
    float | None,
    str | None,
    str | None,
    str,
    str | None,
    str,
    str,
]

_FIELDS = (
    "event_id",
    "chain_id",
    "request_id",
    "service_name",
    "event_type",
    "timestamp",
    "duration_ms",
    "endpoint",
    "user_id",
    "metadata",
    "error_context",
    "dependencies",
    "performance_metrics",
)
_STAGE_TYPES = [
    "uuid",
    "uuid",
    "uuid",
    "text",
    "text",
    "timestamptz",
    "float8",
    "text",
    "text",
    "text",
    "text",
    "text",
    "text",
]
_CREATE_STAGE = """
CREATE TEMP TABLE IF NOT EXISTS chain_history_stage (
    event_id uuid, chain_id uuid, request_id uuid, service_name text, event_type text,
    "timestamp" timestamptz, duration_ms float8, endpoint text, user_id text,
    metadata text, error_context text, dependencies text, performance_metrics text
) ON COMMIT DELETE ROWS
"""
_COPY_STAGE = (
    "COPY chain_history_stage (event_id, chain_id, request_id, service_name, event_type, "
    '"timestamp", duration_ms, endpoint, user_id, metadata, error_context, dependencies, '
    "performance_metrics) "
    "FROM STDIN (FORMAT BINARY)"
)
# Explicit varchar(n) casts truncate over-long strings instead of failing the batch.
_INSERT_FROM_STAGE = """
INSERT INTO chain_history (event_id, chain_id, request_id, service_name, event_type,
    "timestamp", duration_ms, endpoint, user_id, metadata, error_context, dependencies,
    performance_metrics)
SELECT event_id, chain_id, request_id, service_name::varchar(100), event_type::varchar(50),
    "timestamp", duration_ms, endpoint::varchar(255), user_id::varchar(100),
    metadata::jsonb, error_context::jsonb, dependencies::jsonb, performance_metrics::jsonb
FROM chain_history_stage
ON CONFLICT DO NOTHING
"""
_COPY_DIRECT = (
    "COPY chain_history (event_id, chain_id, request_id, service_name, event_type, "
    '"timestamp", duration_ms, endpoint, user_id, metadata, error_context, dependencies, '
    "performance_metrics) FROM STDIN (FORMAT BINARY)"
)
_DIRECT_TYPES = [*_STAGE_TYPES[:9], "jsonb", "jsonb", "jsonb", "jsonb"]
_JSONB_OID = 3802
_REQUIRED_TEXT = ("service_name", "event_type", "metadata", "dependencies", "performance_metrics")
_SPOOL_SUBDIR = "chain_events"
_SEGMENT_GLOB = "seg-*.jsonl"
_SEGMENT_MAX_BYTES = 8 * 1024 * 1024
_REPLAY_CHUNK = 5000


# ------------------------------------------------------------------ serialization


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, set | frozenset):
        return list(obj)
    return str(obj)


def _plain(obj: Any) -> Any:
    """A JSON-safe copy: non-finite floats become null, keys become strings."""
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
    return _json_default(obj)


_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_json_default).encode

try:  # msgspec is ~5x faster than the standard library; optional (the agent may lack it)
    import msgspec

    _FAST_ENCODE: Callable[[Any], bytes] | None = msgspec.json.Encoder(
        enc_hook=_json_default
    ).encode
    _FAST_ERRORS: tuple[type[Exception], ...] = (TypeError, ValueError, msgspec.EncodeError)
except ImportError:  # pragma: no cover - depends on the installed extras
    _FAST_ENCODE = None
    _FAST_ERRORS = (TypeError, ValueError)


def _json(obj: Any) -> str:
    """Compact JSON text; NaN/inf become null, odd types go through ``_json_default``."""
    if _FAST_ENCODE is not None:
        try:  # msgspec writes non-finite floats as null, as _plain does
            return _FAST_ENCODE(obj).decode("utf-8")
        except _FAST_ERRORS:
            return _ENCODE(_plain(obj))
    try:
        return _ENCODE(obj)
    except (ValueError, TypeError):
        return _ENCODE(_plain(obj))


def _as_uuid(value: Any) -> uuid.UUID:
    return value if type(value) is uuid.UUID else uuid.UUID(str(value))


def _deps_json(deps: Sequence[Any]) -> str:
    return _json(
        [
            {
                "target": d.target,
                "endpoint": d.endpoint,
                "attempt": d.attempt,
                "duration_ms": round(d.duration_ms, 4),
                "status": d.status,
                "error": d.error,
            }
            for d in deps
        ]
    )


def event_row(event: ChainEvent) -> Row:
    """The staged row of one event (naive timestamps are taken as UTC).

    Strings longer than their ``chain_history`` column are cut to fit (as the seed's
    ``VARCHAR(n)`` casts do), so one over-long name never fails a batch.
    """
    ts = event.timestamp
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    duration = event.duration_ms
    endpoint = event.endpoint
    user_id = event.user_id
    return (
        _as_uuid(event.event_id),
        _as_uuid(event.chain_id),
        _as_uuid(event.request_id),
        str(event.service_name)[:100],
        str(event.event_type)[:50],
        ts,
        None if duration is None else float(duration),
        None if endpoint is None else str(endpoint)[:255],
        None if user_id is None else str(user_id)[:100],
        _json(event.metadata) if event.metadata else "{}",
        None if event.error_context is None else _json(event.error_context),
        _deps_json(event.dependencies) if event.dependencies else "[]",
        _json(event.performance_metrics) if event.performance_metrics else "{}",
    )


def _encode_line(row: Row) -> bytes:
    """One spool line: ``<crc32 hex> <JSON array of the 13 staged columns>``."""
    if _FAST_ENCODE is not None:
        payload = _FAST_ENCODE(row)  # UUIDs and datetimes as their ISO strings
    else:
        record = [str(row[0]), str(row[1]), str(row[2]), *row[3:]]
        record[5] = row[5].isoformat()
        payload = json.dumps(record, separators=(",", ":")).encode("utf-8")
    return b"%08x %s\n" % (zlib.crc32(payload), payload)


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError("expected a string")
    return value


def _decode_line(line: bytes) -> Row:
    """Parse one spool line; raises ValueError with a reason when it is corrupt."""
    if not line.endswith(b"\n"):
        raise ValueError("truncated line")
    crc, sep, payload = line.rstrip(b"\n").partition(b" ")
    if not sep or len(crc) != 8:
        raise ValueError("no checksum")
    if int(crc, 16) != zlib.crc32(payload):
        raise ValueError("checksum mismatch")
    try:
        r = json.loads(payload)
        if isinstance(r, list):  # the current form: the 13 columns in order
            if len(r) != len(_FIELDS):
                raise ValueError(f"{len(r)} columns")
            r = dict(zip(_FIELDS, r, strict=True))
        duration = r["duration_ms"]
        ts = datetime.fromisoformat(r["timestamp"])
        if ts.tzinfo is None:
            raise ValueError("naive timestamp")
        for key in (
            "service_name",
            "event_type",
            "metadata",
            "dependencies",
            "performance_metrics",
        ):
            if not isinstance(r[key], str):
                raise TypeError(f"{key} is not a string")
        return (
            uuid.UUID(r["event_id"]),
            uuid.UUID(r["chain_id"]),
            uuid.UUID(r["request_id"]),
            r["service_name"],
            r["event_type"],
            ts,
            None if duration is None else float(duration),
            _opt_str(r["endpoint"]),
            _opt_str(r["user_id"]),
            r["metadata"],
            _opt_str(r["error_context"]),
            r["dependencies"],
            r["performance_metrics"],
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"bad record: {exc}") from exc


# ----------------------------------------------------------------- database writes


class _JsonbTextDumper(Dumper):
    """Binary ``jsonb`` from JSON text already built (version byte 1 + the text)."""

    format = pq.Format.BINARY
    oid = _JSONB_OID

    def dump(self, obj: Any) -> bytes:
        return b"\x01" + (obj.encode("utf-8") if isinstance(obj, str) else bytes(obj))


class _JsonbText(str):
    """Marker type under which ``_JsonbTextDumper`` is registered (by oid it serves str)."""


def _copy_direct(cur: psycopg.Cursor[Any], rows: Sequence[Row]) -> None:
    cur.adapters.register_dumper(_JsonbText, _JsonbTextDumper)
    with cur.copy(_COPY_DIRECT) as copy:
        copy.set_types(_DIRECT_TYPES)
        for row in rows:
            copy.write_row(row)


def write_rows(conn: psycopg.Connection[Any], rows: Sequence[Row], *, fresh: bool = True) -> int:
    """COPY staged rows into ``chain_history`` in one transaction; return rows inserted.

    ``fresh`` (the writer's live batches, whose ids were never sent): binary COPY straight
    into ``chain_history``, about 2x faster; a duplicate key there rolls back and the batch
    goes the idempotent way. Otherwise (replays): COPY into a temporary staging table and
    ``INSERT ... ON CONFLICT DO NOTHING``.
    """
    if not rows:
        return 0
    if fresh:
        try:
            with conn.transaction(), conn.cursor() as cur:
                _copy_direct(cur, rows)
            return len(rows)
        except psycopg.errors.UniqueViolation:
            pass  # some were written before (e.g. a lost commit acknowledgement)
    outer = conn.info.transaction_status != pq.TransactionStatus.IDLE
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_CREATE_STAGE)
        with cur.copy(_COPY_STAGE) as copy:
            copy.set_types(_STAGE_TYPES)
            for row in rows:
                copy.write_row(row)
        cur.execute(_INSERT_FROM_STAGE)
        inserted = max(cur.rowcount, 0)
        if outer:  # ON COMMIT DELETE ROWS fires only when the caller commits
            cur.execute("DELETE FROM chain_history_stage")
    return inserted


def write_events(conn: psycopg.Connection[Any], events: Iterable[ChainEvent]) -> int:
    """Write events synchronously (idempotent by ``event_id``); return rows newly inserted."""
    return write_rows(conn, [event_row(e) for e in events])


def _write_isolating(
    conn: psycopg.Connection[Any],
    rows: Sequence[Row],
    reject: Callable[[Row, str], None],
) -> int:
    """Write rows; on invalid data, bisect and hand the offending rows to ``reject``.

    Connection errors and other failures propagate (the caller spools the rows).
    """
    try:
        return write_rows(conn, rows)
    except (psycopg.DataError, psycopg.IntegrityError) as exc:
        if len(rows) == 1:
            reject(rows[0], f"{type(exc).__name__}: {exc}".strip())
            return 0
        mid = len(rows) // 2
        return _write_isolating(conn, rows[:mid], reject) + _write_isolating(
            conn, rows[mid:], reject
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
    """A batch written to its own locked segment before it is sent to the database."""

    path: Path
    fh: IO[bytes]
    size: int


class Spool:
    """Append-only segment files of staged rows; each segment is locked by its writer.

    Bounded: segments together stay under ``max_bytes``. When a new write would cross
    it, ``full_policy`` decides: ``"drop_newest"`` (default) refuses the new rows
    (``append`` returns how many it kept) so the oldest evidence is kept and replayed in
    order; ``"drop_oldest"`` deletes the oldest unlocked segments until the rows fit.
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

    def append(self, rows: Sequence[Row]) -> tuple[int, int]:
        """Append rows to the current segment and fsync it.

        Returns ``(kept, dropped)``: rows refused by a full spool and events of older
        segments deleted to make room (``drop_oldest``).
        """
        if not rows:
            return 0, 0
        lines = [_encode_line(r) for r in rows]
        data = b"".join(lines)
        dropped = self._make_room(len(data))
        kept = len(lines)
        if self.size + len(data) > self.max_bytes:  # keep the oldest rows that fit
            room = self.max_bytes - self.size
            kept = 0
            while kept < len(lines) and room >= len(lines[kept]):
                room -= len(lines[kept])
                kept += 1
            if kept == 0:
                return 0, dropped
            data = b"".join(lines[:kept])
        if self._fh is None or self._bytes >= _SEGMENT_MAX_BYTES:
            self.close_segment()
            self._open_segment()
        assert self._fh is not None
        self._fh.write(data)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._bytes += len(data)
        return kept, dropped

    def journal(self, rows: Sequence[Row]) -> Journal | None:
        """Write rows durably to a new locked segment before they go to the database.

        ``None`` when the spool is full (the rows then go unjournaled). Finish with
        :meth:`release`: ``keep=False`` deletes the segment (the rows are committed),
        ``keep=True`` unlocks it for replay.
        """
        data = b"".join(_encode_line(r) for r in rows)
        if self.size + len(data) > self.max_bytes and (self.rescan() + len(data) > self.max_bytes):
            return None
        path, fd = self._create_segment()
        fh = os.fdopen(fd, "ab")
        fh.write(data)
        fh.flush()
        os.fsync(fd)
        self._others += len(data)
        return Journal(path, fh, len(data))

    def release(self, journal: Journal, *, keep: bool) -> None:
        """Delete a journal segment whose rows are committed, or leave it to replay."""
        if not keep:
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

    def reject(self, row: Row, reason: str) -> None:
        """Keep an event the database refused, with the reason, in ``rejected.jsonl``."""
        line = _encode_line(row).decode("utf-8").rstrip("\n")
        record = {"reason": reason, "at": datetime.now(UTC).isoformat(), "line": line}
        _append_durably(self.rejected_path, (json.dumps(record) + "\n").encode("utf-8"))

    def replay(self, conn: psycopg.Connection[Any]) -> ReplayResult:
        """Write every unlocked segment to the database in order, then delete it.

        Idempotent: a crash between the insert and the delete replays rows that the
        database then ignores. Raises on connection errors (the segment stays).
        """
        replayed = corrupt = rejected = segments = skipped = 0
        rejects: list[tuple[Row, str]] = []
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
                rows: list[Row] = []
                bad: list[dict[str, Any]] = []
                for number, line in enumerate(lines, start=1):
                    try:
                        rows.append(_decode_line(line))
                    except ValueError as exc:
                        bad.append(
                            {
                                "segment": path.name,
                                "line_no": number,
                                "reason": str(exc),
                                "raw": line.decode("utf-8", errors="replace"),
                            }
                        )
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

    Durability: with ``journal`` (default) every batch is fsync'd to its own spool segment
    before it is sent, and the segment is deleted once the database has committed it, so
    a crash (even ``kill -9``) at any point after the writer thread took a batch loses
    nothing: the next writer (or :func:`replay_spool`) replays it and the ``event_id``
    key drops what had already landed. ``flush()`` returning True is the acknowledgement;
    events emitted but not yet taken by the thread (at most ``flush_interval_s`` or
    ``batch_size`` events) live only in memory. The spool is capped at
    ``spool_max_bytes`` (policy: see :class:`Spool`); events refused by a full spool are
    counted in ``dropped`` and ``spool_full``, batches sent unjournaled in ``unjournaled``.
    """

    def __init__(
        self,
        url: str | Callable[[], str],
        *,
        spool_dir: Path | None = None,
        batch_size: int = 500,
        flush_interval_s: float = 0.2,
        max_queue: int = 100_000,
        retry_interval_s: float = 1.0,
        max_retry_interval_s: float = 30.0,
        connect_timeout_s: float = 3.0,
        max_batch: int = 20_000,
        journal: bool = True,
        spool_max_bytes: int = 1 << 30,
        spool_full_policy: str = "drop_newest",
    ) -> None:
        self._url: Callable[[], str] = url if callable(url) else (lambda: url)
        self._spool = Spool(
            _spool_directory(spool_dir), max_bytes=spool_max_bytes, full_policy=spool_full_policy
        )
        self._journal = journal
        self._max_batch = max(max_batch, batch_size)
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._max_queue = max_queue
        self._retry_interval_s = retry_interval_s
        self._max_retry_interval_s = max_retry_interval_s
        self._connect_timeout_s = connect_timeout_s

        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        self._queue: deque[ChainEvent] = deque()
        self._stopping = False
        self._flush_requested = False
        self._enqueued = 0
        self._handled = 0
        self._counts = dict.fromkeys(
            (
                "emitted",
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

    def emit(self, event: ChainEvent) -> None:
        """Queue one event; returns at once."""
        with self._lock:
            self._counts["emitted"] += 1
            if self._stopping or len(self._queue) >= self._max_queue:
                self._counts["dropped"] += 1
                return
            self._queue.append(event)
            self._enqueued += 1
            if len(self._queue) >= self._batch_size:
                self._work.notify()

    # -- control --------------------------------------------------------------------

    @property
    def stats(self) -> WriterStats:
        """A consistent snapshot of the counters."""
        with self._lock:
            return WriterStats(
                **self._counts,
                queued=len(self._queue),
                online=self._online,
                spool_bytes=self._spool.size,
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event emitted so far is written, spooled or rejected."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._enqueued
            self._flush_requested = True
            self._work.notify()
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
        with self._lock:
            self._stopping = True
            self._work.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.error("chain writer did not stop within %.0f s", timeout)
        atexit.unregister(self.close)

    def __enter__(self) -> ChainWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writer thread --------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                if (
                    len(self._queue) < self._batch_size
                    and not self._stopping
                    and not self._flush_requested
                ):
                    self._work.wait(self._flush_interval_s)
                n = min(len(self._queue), self._max_batch)
                batch = [self._queue.popleft() for _ in range(n)]
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
                    self._handled += len(batch)
                    self._progress.notify_all()
            if stop:
                break
        self._spool.close_segment()
        self._drop_connection()

    def _count(self, name: str, n: int) -> None:
        if n:
            with self._lock:
                self._counts[name] += n

    def _process(self, batch: list[ChainEvent]) -> None:
        rows: list[Row] = []
        for event in batch:
            try:
                rows.append(event_row(event))
            except Exception as exc:
                log.warning("chain writer: unserializable event rejected: %r", exc)
                self._count("rejected", 1)
        if self._spool_pending:
            self._try_replay()
        if not rows:
            return
        conn = None if self._spool_pending else self._connection()
        if conn is None:
            self._spool_rows(rows)
            return
        journal = self._spool.journal(rows) if self._journal else None
        if self._journal and journal is None:
            self._count("unjournaled", len(rows))
        rejected: list[int] = []
        try:
            _write_isolating(conn, rows, lambda r, why: self._reject(r, why, rejected))
        except (psycopg.Error, ChaintradeError) as exc:
            self._went_offline(exc)
            # Rows already committed are ignored on replay.
            if journal is not None:
                self._spool.release(journal, keep=True)
                self._spool_pending = True
                self._count("spooled", len(rows))
            else:
                self._spool_rows(rows)
            return
        if journal is not None:
            self._spool.release(journal, keep=False)
        self._count("written", len(rows) - len(rejected))

    def _reject(self, row: Row, reason: str, sink: list[int]) -> None:
        log.warning("chain writer: event %s rejected by the database: %s", row[0], reason)
        self._spool.reject(row, reason)
        self._count("rejected", 1)
        sink.append(1)

    def _spool_rows(self, rows: list[Row]) -> None:
        kept, dropped = self._spool.append(rows)
        self._spool_pending = True
        self._count("spooled", kept)
        refused = len(rows) - kept
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
            (_as_uuid(chain_id),),
        )
        return cur.fetchall()


__all__ = [
    "ChainWriter",
    "Journal",
    "ReplayResult",
    "Row",
    "Spool",
    "WriterStats",
    "chain_events",
    "count_chains",
    "count_events",
    "event_row",
    "replay_spool",
    "write_events",
    "write_rows",
]
