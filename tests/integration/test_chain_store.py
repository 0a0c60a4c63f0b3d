"""The chain event writer against a real PostgreSQL: batching, spool, replay, quarantine."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from chaintrade.chain import ChainContext, ChainEvent, Dependency
from chaintrade.chain_store import (
    ChainWriter,
    chain_events,
    copy_records,
    count_chains,
    count_events,
    replay_spool,
    write_events,
    write_records,
)
from chaintrade.db import connect

pytestmark = pytest.mark.integration

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/nowhere"


def make_events(n: int, chains: int = 1) -> list[ChainEvent]:
    chain_ids = [uuid.uuid4() for _ in range(chains)]
    start = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    return [
        ChainEvent(
            chain_id=chain_ids[i % chains],
            request_id=uuid.uuid4(),
            service_name="collector",
            event_type="complete",
            timestamp=start + timedelta(milliseconds=i),
            duration_ms=0.125,
            metadata={"i": i, "symbol": "EURUSD"},
        )
        for i in range(n)
    ]


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def spool_segments(spool_dir: Path) -> list[Path]:
    return sorted((spool_dir / "chain_events").glob("seg-*.jsonl"))


def spool_while_unreachable(spool_dir: Path, events: list[ChainEvent]) -> None:
    with ChainWriter(UNREACHABLE, spool_dir=spool_dir) as writer:
        for event in events:
            writer.emit(event)
        assert writer.flush(10)
        assert writer.stats.spooled == len(events)
        assert writer.stats.written == 0


def test_write_events_round_trips_every_column_and_is_idempotent(clean_db: str) -> None:
    chain = uuid.uuid4()
    event = ChainEvent(
        chain_id=chain,
        request_id=uuid.uuid4(),
        service_name="serving",
        event_type="error",
        timestamp=datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=UTC),
        duration_ms=0.0421,
        endpoint="/predict",
        user_id="quant-1",
        metadata={"symbol": "EURUSD", "bars": [1, 2]},
        dependencies=(Dependency("feast", "get_online_features", 1, 0.3, "ok"),),
        performance_metrics={"latency_ms": 1.5, "broken": float("nan")},
        error_context={"type": "TimeoutError", "message": "slow"},
    )
    with connect(clean_db) as conn:
        assert write_events(conn, [event]) == 1
        assert write_events(conn, [event]) == 0  # same event_id: ignored

    [row] = chain_events(clean_db, chain)
    assert row["event_id"] == event.event_id
    assert row["timestamp"] == event.timestamp
    assert row["duration_ms"] == pytest.approx(0.0421)
    assert row["endpoint"] == "/predict" and row["user_id"] == "quant-1"
    assert row["metadata"] == {"symbol": "EURUSD", "bars": [1, 2]}
    assert row["dependencies"] == [
        {
            "target": "feast",
            "endpoint": "get_online_features",
            "attempt": 1,
            "duration_ms": 0.3,
            "status": "ok",
            "error": None,
        }
    ]
    assert row["performance_metrics"] == {"latency_ms": 1.5, "broken": None}
    assert row["error_context"] == {"type": "TimeoutError", "message": "slow"}


@pytest.mark.parametrize("binary_min_batch", [1, None], ids=["binary", "json"])
def test_writer_writes_each_event_exactly_once(
    clean_db: str, tmp_path: Path, binary_min_batch: int | None
) -> None:
    events = make_events(2_345, chains=7)
    with ChainWriter(clean_db, spool_dir=tmp_path, binary_min_batch=binary_min_batch) as writer:
        for event in events:
            writer.emit(event)
        assert writer.flush(30)
        stats = writer.stats
    assert (stats.emitted, stats.written, stats.spooled, stats.dropped) == (2_345, 2_345, 0, 0)
    assert count_events(clean_db) == 2_345
    assert count_chains(clean_db) == 7
    assert spool_segments(tmp_path) == []


def test_chain_context_steps_reach_the_database(clean_db: str, tmp_path: Path) -> None:
    with ChainWriter(clean_db, spool_dir=tmp_path) as writer:
        ctx = ChainContext(writer)
        with ctx.step("collector", "/bars") as step:
            step.metadata["bars"] = 1
        with pytest.raises(ValueError), ctx.step("validator"):
            raise ValueError("bad bar")
        assert writer.flush(10)
    rows = chain_events(clean_db, ctx.chain_id)
    assert [r["event_type"] for r in rows] == ["complete", "error"]
    # Ids given by the writer thread: time-ordered UUIDv7, distinct.
    assert (
        all(r["event_id"].version == 7 for r in rows) and rows[0]["event_id"] != rows[1]["event_id"]
    )
    assert rows[0]["metadata"] == {"bars": 1} and rows[0]["endpoint"] == "/bars"
    assert rows[1]["error_context"]["message"] == "bad bar"


def test_emit_returns_at_once_while_the_database_is_unreachable(tmp_path: Path) -> None:
    events = make_events(20_000)
    with ChainWriter(UNREACHABLE, spool_dir=tmp_path) as writer:
        started = time.perf_counter()
        for event in events:
            writer.emit(event)
        elapsed = time.perf_counter() - started
        assert writer.flush(30)
        assert writer.stats.spooled == 20_000
    assert elapsed < 1.0, f"20k emits took {elapsed:.3f} s"


def test_events_spooled_while_unreachable_are_replayed_once_when_it_answers(
    clean_db: str, tmp_path: Path
) -> None:
    target = [UNREACHABLE]
    early, late = make_events(300), make_events(50)
    with ChainWriter(lambda: target[0], spool_dir=tmp_path, retry_interval_s=0.1) as writer:
        for event in early:
            writer.emit(event)
        assert writer.flush(10)
        assert writer.stats.spooled == 300 and not writer.stats.online
        assert spool_segments(tmp_path)

        target[0] = clean_db  # the database comes back
        wait_for(lambda: writer.stats.replayed == 300)
        for event in late:
            writer.emit(event)
        assert writer.flush(10)
        stats = writer.stats
    assert (stats.spooled, stats.replayed, stats.written, stats.corrupt) == (300, 300, 50, 0)
    assert count_events(clean_db) == 350
    assert spool_segments(tmp_path) == []
    assert replay_spool(clean_db, tmp_path).replayed == 0  # nothing left to replay


def test_spool_of_an_earlier_run_is_replayed_when_a_writer_starts(
    clean_db: str, tmp_path: Path
) -> None:
    spool_while_unreachable(tmp_path, make_events(200))
    with ChainWriter(clean_db, spool_dir=tmp_path) as writer:
        wait_for(lambda: writer.stats.replayed == 200)
    assert count_events(clean_db) == 200
    assert spool_segments(tmp_path) == []


def test_replaying_the_same_segment_twice_inserts_once(clean_db: str, tmp_path: Path) -> None:
    spool_while_unreachable(tmp_path, make_events(120))
    [segment] = spool_segments(tmp_path)
    copy = tmp_path / "segment.copy"
    shutil.copy(segment, copy)

    assert replay_spool(clean_db, tmp_path).replayed == 120
    shutil.copy(copy, segment)  # as if we crashed after the insert, before the delete
    assert replay_spool(clean_db, tmp_path).replayed == 120
    assert count_events(clean_db) == 120


def test_corrupt_spool_lines_are_quarantined_and_the_good_ones_replayed(
    clean_db: str, tmp_path: Path
) -> None:
    events = make_events(100)
    spool_while_unreachable(tmp_path, events)
    [segment] = spool_segments(tmp_path)
    lines = segment.read_bytes().splitlines(keepends=True)
    lines[10] = lines[10].replace(b'"collector"', b'"collectoR"')  # checksum no longer matches
    lines.insert(50, b"this is not a spool record\n")
    segment.write_bytes(b"".join(lines) + lines[0][:40])  # and a torn last write

    with ChainWriter(clean_db, spool_dir=tmp_path) as writer:
        wait_for(lambda: writer.stats.replayed == 99)
        stats = writer.stats
    assert stats.corrupt == 3
    assert count_events(clean_db) == 99
    assert events[10].event_id not in {
        r["event_id"] for r in chain_events(clean_db, events[0].chain_id)
    }
    quarantined = [
        json.loads(x)
        for x in (tmp_path / "chain_events" / "quarantine.jsonl").read_text().splitlines()
    ]
    assert sorted(q["reason"] for q in quarantined) == [
        "checksum mismatch",
        "no checksum",
        "truncated line",
    ]
    assert spool_segments(tmp_path) == []


def test_event_the_database_refuses_is_rejected_without_losing_its_batch(
    clean_db: str, tmp_path: Path
) -> None:
    events = make_events(40)
    bad = ChainEvent(
        chain_id=uuid.uuid4(),
        request_id=uuid.uuid4(),
        service_name="nul\x00byte",
        event_type="complete",
        timestamp=datetime.now(UTC),
    )
    with ChainWriter(clean_db, spool_dir=tmp_path) as writer:
        for event in [*events[:20], bad, *events[20:]]:
            writer.emit(event)
        assert writer.flush(10)
        stats = writer.stats
    assert (stats.written, stats.rejected, stats.spooled) == (40, 1, 0)
    assert count_events(clean_db) == 40
    rejected = (tmp_path / "chain_events" / "rejected.jsonl").read_text().splitlines()
    assert len(rejected) == 1 and str(bad.event_id) in rejected[0]


def test_close_spools_what_is_left_when_the_database_is_down(tmp_path: Path) -> None:
    writer = ChainWriter(UNREACHABLE, spool_dir=tmp_path, flush_interval_s=60)
    for event in make_events(10):
        writer.emit(event)
    writer.close()
    assert writer.stats.spooled == 10
    writer.emit(make_events(1)[0])  # after close: counted, never raises
    assert writer.stats.dropped == 1


def test_binary_copy_is_all_or_nothing_and_write_records_then_skips_stored_ids(
    clean_db: str,
) -> None:
    records = [e.record() for e in make_events(50)]
    with connect(clean_db, autocommit=True) as conn:
        copy_records(conn, records[:20])
        assert count_events(clean_db) == 20
        with pytest.raises(psycopg.errors.UniqueViolation):
            copy_records(conn, records[10:30])  # ten of them are stored
        assert count_events(clean_db) == 20  # none of the refused batch landed
        assert write_records(conn, records) == 30  # the idempotent way
        assert write_records(conn, records) == 0
    assert count_events(clean_db) == 50


def test_a_batch_the_binary_copy_refuses_lands_whole_the_idempotent_way(
    clean_db: str, tmp_path: Path
) -> None:
    events = make_events(30)
    long = ChainEvent(
        chain_id=events[0].chain_id,
        request_id=uuid.uuid4(),
        service_name="s" * 150,  # longer than chain_history.service_name
        event_type="complete",
        timestamp=datetime(2024, 3, 1, 13, 0, tzinfo=UTC),
        endpoint="/" + "e" * 300,
    )
    bare = long.record()  # no metadata, dependencies or metrics at all
    bare[0], bare[3], bare[7], bare[9], bare[11], bare[12] = None, "risk", None, None, None, None
    with ChainWriter(
        clean_db, spool_dir=tmp_path, flush_interval_s=60, binary_min_batch=1
    ) as writer:
        for event in [*events, long, events[3]]:  # events[3] twice
            writer.emit(event)
        writer.emit_record(bare)
        assert writer.flush(10)
        stats = writer.stats
    assert (stats.rejected, stats.spooled, stats.dropped) == (0, 0, 0)
    rows = {r["event_id"]: r for r in chain_events(clean_db, events[0].chain_id)}
    assert len(rows) == 32 and count_events(clean_db) == 32
    assert rows[long.event_id]["service_name"] == "s" * 100
    assert rows[long.event_id]["endpoint"] == ("/" + "e" * 300)[:255]
    [stored_bare] = [r for r in rows.values() if r["service_name"] == "risk"]
    assert (stored_bare["metadata"], stored_bare["dependencies"]) == ({}, [])
    assert stored_bare["performance_metrics"] == {}
