"""The chain writer's promises under failure: database outage, kill -9, full spool."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from psycopg import conninfo

from chaintrade.chain import ChainEvent
from chaintrade.chain_store import ChainWriter, Spool, event_payloads, frame, replay_spool
from chaintrade.db import connect

pytestmark = pytest.mark.integration

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nowhere"


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def events(n: int, start: datetime | None = None) -> list[ChainEvent]:
    t0 = start or datetime(2024, 5, 1, tzinfo=UTC)
    chain = uuid.uuid4()
    return [
        ChainEvent(
            chain, uuid.uuid4(), "collector", "complete", t0 + timedelta(milliseconds=i), 0.5
        )
        for i in range(n)
    ]


def stored_ids(url: str) -> list[uuid.UUID]:
    with connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT event_id FROM chain_history").fetchall()]


class Proxy:
    """A TCP (or Unix-socket) forwarder to PostgreSQL that can be cut and restored."""

    def __init__(self, url: str) -> None:
        params = conninfo.conninfo_to_dict(url)
        host = str(params.get("host") or "127.0.0.1")
        port = int(params.get("port") or 5432)
        self._upstream: tuple[int, object] = (
            (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}")
            if host.startswith("/")
            else (socket.AF_INET, (host, port))
        )
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self.url = conninfo.make_conninfo(url, host="127.0.0.1", port=str(self.port))
        self.up = True
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            family, address = self._upstream
            server = socket.socket(family, socket.SOCK_STREAM)
            server.connect(address)  # type: ignore[arg-type]
            with self._lock:
                self._conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Refuse new connections and reset the open ones (the database 'goes down')."""
        self.up = False
        with self._lock:
            for s in self._conns:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            self._conns.clear()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self._listener.close()


@pytest.mark.parametrize(
    ("journal_fsync", "binary_min_batch"),
    [(True, None), (False, 1)],
    ids=["journal-fsync-json-copy", "journal-write-binary-copy"],
)
def test_database_down_during_a_100_events_per_second_run_then_back_lands_each_once(
    clean_db: str, tmp_path: Path, journal_fsync: bool, binary_min_batch: int | None
) -> None:
    proxy = Proxy(clean_db)
    sent: list[ChainEvent] = []
    try:
        with ChainWriter(
            proxy.url,
            spool_dir=tmp_path,
            flush_interval_s=0.05,
            retry_interval_s=0.1,
            max_retry_interval_s=0.2,
            connect_timeout_s=1,
            journal_fsync=journal_fsync,
            binary_min_batch=binary_min_batch,
        ) as writer:
            t0 = datetime.now(UTC)
            started = time.monotonic()
            phase = "up"
            for i in range(400):  # 4 s at 100 events/s: up 1 s, down 1.5 s, up 1.5 s
                elapsed = time.monotonic() - started
                if phase == "up" and elapsed >= 1.0:
                    proxy.cut()
                    phase = "down"
                elif phase == "down" and elapsed >= 2.5:
                    proxy.restore()
                    phase = "back"
                event = ChainEvent(
                    uuid.uuid4(),
                    uuid.uuid4(),
                    "collector",
                    "complete",
                    t0 + timedelta(milliseconds=10 * i),
                    0.1,
                )
                writer.emit(event)
                sent.append(event)
                time.sleep(max(0.0, started + (i + 1) / 100 - time.monotonic()))
            assert writer.flush(20)
            wait_for(lambda: writer.stats.replayed >= writer.stats.spooled)
            stats = writer.stats
    finally:
        proxy.close()
    assert stats.spooled > 0, "the outage was not seen"
    ids = stored_ids(clean_db)
    assert len(ids) == len(set(ids)) == 400
    assert set(ids) == {e.event_id for e in sent}
    assert stats.dropped == 0 and stats.corrupt == 0


_KILLED_WRITER = textwrap.dedent(
    """
    import sys, uuid
    from datetime import UTC, datetime, timedelta
    from pathlib import Path
    from chaintrade.chain import ChainEvent
    from chaintrade.chain_store import ChainWriter

    url, spool, fsync = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "fsync"
    binary_min_batch = int(sys.argv[4])
    t0 = datetime(2024, 6, 1, tzinfo=UTC)
    def batch(n, offset):
        return [ChainEvent(uuid.uuid4(), uuid.uuid4(), "risk", "complete",
                           t0 + timedelta(milliseconds=offset + i), 1.0) for i in range(n)]
    w = ChainWriter(url, spool_dir=spool, batch_size=5000, flush_interval_s=60,
                    journal_fsync=fsync, binary_min_batch=binary_min_batch)
    first = batch(500, 0)
    for e in first:
        w.emit(e)
    assert w.flush(30)
    print("acked", " ".join(str(e.event_id) for e in first), flush=True)
    sys.stdin.readline()  # the test now locks chain_history
    second = batch(700, 1000)
    for e in second:
        w.emit(e)
    print("flushing", " ".join(str(e.event_id) for e in second), flush=True)
    w.flush(60)
    print("flushed", flush=True)
    """
)


@pytest.mark.parametrize(
    ("policy", "binary_min_batch"),
    [("fsync", 1), ("write", 5000)],
    ids=["journal-fsync-binary-copy", "journal-write-json-copy"],
)
def test_kill_9_during_a_flush_loses_nothing_and_doubles_nothing(
    clean_db: str, tmp_path: Path, policy: str, binary_min_batch: int
) -> None:
    """Under either journal policy (kill -9 leaves the page cache, which the OS keeps) and
    either way to the database."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILLED_WRITER,
            clean_db,
            str(tmp_path),
            policy,
            str(binary_min_batch),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        kind, *first = proc.stdout.readline().split()
        assert kind == "acked" and len(first) == 500
        with connect(clean_db) as locker:
            locker.execute("LOCK TABLE chain_history IN ACCESS EXCLUSIVE MODE")
            proc.stdin.write("go\n")
            proc.stdin.flush()
            kind, *second = proc.stdout.readline().split()
            assert kind == "flushing" and len(second) == 700

            def write_is_waiting() -> bool:  # the batch's COPY (or INSERT) is blocked
                with connect(clean_db) as probe:
                    row = probe.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock' AND query ILIKE '%%chain_history%%'"
                    ).fetchone()
                return bool(row and row[0])

            wait_for(write_is_waiting)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            locker.rollback()  # releases the lock; the killed insert was never committed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    result = replay_spool(clean_db, tmp_path)
    assert result.corrupt == 0
    ids = stored_ids(clean_db)
    assert len(ids) == len(set(ids)) == 1200
    assert {str(i) for i in ids} == set(first) | set(second)
    assert replay_spool(clean_db, tmp_path).replayed == 0


def test_spool_at_its_cap_keeps_the_oldest_and_counts_what_it_refused(tmp_path: Path) -> None:
    probe = events(1)
    size = len(frame(event_payloads(probe)))
    cap = size * 250  # room for about 250 events
    with ChainWriter(
        UNREACHABLE, spool_dir=tmp_path, spool_max_bytes=cap, batch_size=100
    ) as writer:
        for event in events(400):
            writer.emit(event)
        assert writer.flush(30)
        stats = writer.stats
    assert 200 <= stats.spooled <= 250
    assert stats.spooled + stats.dropped == 400
    assert stats.spool_full == stats.dropped > 0
    assert stats.spool_bytes <= cap


def test_spool_at_its_cap_drop_oldest_policy_keeps_the_newest(
    clean_db: str, tmp_path: Path
) -> None:
    batch = events(600)
    size = max(len(frame(event_payloads([e]))) for e in batch)
    spool = Spool(tmp_path / "chain_events", max_bytes=size * 250, full_policy="drop_oldest")
    dropped_total = 0
    for start in range(0, 600, 100):
        kept, dropped = spool.append(event_payloads(batch[start : start + 100]))
        spool.close_segment()  # one segment per batch, as after each outage flush
        assert kept == 100
        dropped_total += dropped
    assert spool.size <= size * 250
    with connect(clean_db, autocommit=True) as conn:
        result = spool.replay(conn)
    assert result.replayed + dropped_total == 600
    stored = set(stored_ids(clean_db))
    assert {e.event_id for e in batch[-200:]} <= stored  # the newest survive
    assert batch[0].event_id not in stored


def test_journal_block_torn_or_altered_is_quarantined_never_half_trusted(
    clean_db: str, tmp_path: Path
) -> None:
    batch = events(30)
    blob = b"".join(p + b"\n" for p in event_payloads(batch))
    spool = Spool(tmp_path / "chain_events")
    # A journal torn by a crash mid-write: 20 whole lines, then half of the 21st.
    torn = spool.journal(blob, 30)
    assert torn is not None
    spool.release(torn, keep=True)
    whole = b"".join(blob.splitlines(keepends=True)[:20])
    torn.path.write_bytes(whole + blob.splitlines(keepends=True)[20][:25])
    # A complete journal block with one altered byte: its checksum no longer matches.
    altered = spool.journal(b"".join(p + b"\n" for p in event_payloads(events(10))), 10)
    assert altered is not None
    spool.release(altered, keep=True)
    data = altered.path.read_bytes()
    altered.path.write_bytes(data.replace(b'"collector"', b'"collectoR"', 1))

    with connect(clean_db, autocommit=True) as conn:
        result = spool.replay(conn)
    assert (result.replayed, result.corrupt) == (20, 11)
    assert set(stored_ids(clean_db)) == {e.event_id for e in batch[:20]}
    reasons = [
        json.loads(x)["reason"]
        for x in (tmp_path / "chain_events" / "quarantine.jsonl").read_text().splitlines()
    ]
    assert sorted(set(reasons)) == ["block checksum mismatch", "truncated line"]
    assert reasons.count("block checksum mismatch") == 10
