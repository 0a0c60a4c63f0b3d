"""Chain tracing throughput and overhead against a real PostgreSQL.

    uv run python benchmarks/bench_chain.py --db postgresql://postgres@127.0.0.1:5432/test
    uv run python benchmarks/bench_chain.py --db ... --events 1000000

Figures (each on a fresh database with every migration applied):
- serialize: the writer thread's Python share per event (ids, one msgspec call per batch,
  the journal block's checksum);
- copy: ``write_ndjson`` (COPY of the JSON lines into a staging table, then
  ``INSERT ... ON CONFLICT DO NOTHING``; PostgreSQL parses the JSON) in 10 k batches;
- executemany: ``INSERT ... ON CONFLICT DO NOTHING`` with ``executemany`` (1 k batches);
- writer: ``ChainWriter.emit_record`` N events, then ``flush`` (journal on), end to end;
- caller: what a traced step costs on the caller's thread (``ChainContext.step`` with
  metadata and a dependency, into a sink that drops the record);
- overhead: chains of 6 steps, tracing off vs on (ChainContext + ChainWriter into the
  database), for three step workloads: a tight CPU loop of ~70 µs per step, ~700 µs per
  step, and an agent-like chain (CPU steps of 0.1-3 ms and two waits standing in for the
  serving and terminal round trips). Off and on rounds alternate; wall time (best and
  median) and the process's CPU time (both threads) are reported.

Writes ``benchmarks/results/chain.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

from chaintrade.chain import ChainContext, ChainEvent, Dependency, Record, new_id
from chaintrade.chain_store import ChainWriter, encode_records, write_ndjson
from chaintrade.db import connect, migrate, with_database

RESULTS = Path(__file__).resolve().parent / "results" / "chain.json"
SERVICES = ("collector", "validator", "prediction", "decision", "risk", "execution")


def make_events(n: int) -> list[ChainEvent]:
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    out = []
    chain = new_id()
    for i in range(n):
        if i % 6 == 0:
            chain = new_id()
        service = SERVICES[i % 6]
        out.append(
            ChainEvent(
                chain,
                chain,
                service,
                "complete",
                t0 + timedelta(microseconds=100 * i),
                0.25 + (i % 7) * 0.1,
                endpoint="/predict" if service == "prediction" else None,
                metadata={"symbol": "EURUSD", "bar": i, "action": "HOLD"},
                dependencies=(Dependency("serving", "/predict", 1, 1.3, "ok"),)
                if service == "prediction"
                else (),
                performance_metrics={"latency_ms": 1.3} if service == "prediction" else {},
            )
        )
    return out


def fresh_records(events: Sequence[ChainEvent]) -> list[Record]:
    """Records as a ChainContext hands them over (no event id yet)."""
    out = []
    for e in events:
        r = e.record()
        r[0] = None
        out.append(r)
    return out


def fresh_db(url: str, name: str) -> str:
    with connect(url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    db = with_database(url, name)
    migrate(db)
    return db


def drop_db(url: str, name: str) -> None:
    with connect(url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_INSERT = (
    "INSERT INTO chain_history (event_id, chain_id, request_id, service_name, event_type, "
    '"timestamp", duration_ms, endpoint, user_id, metadata, error_context, dependencies, '
    "performance_metrics) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, "
    "%s::jsonb, %s::jsonb) ON CONFLICT DO NOTHING"
)


def _param_row(e: ChainEvent) -> tuple[Any, ...]:
    enc = msgspec.json.encode
    return (
        e.event_id,
        e.chain_id,
        e.request_id,
        e.service_name,
        e.event_type,
        e.timestamp,
        e.duration_ms,
        e.endpoint,
        e.user_id,
        enc(e.metadata).decode(),
        None if e.error_context is None else enc(e.error_context).decode(),
        enc(e.dependencies).decode(),
        enc(e.performance_metrics).decode(),
    )


def writer_share_us(events: Sequence[ChainEvent], batch: int = 2000) -> float:
    """The writer thread's Python work per event: ids, JSON encoding, journal checksum."""
    records = fresh_records(events)
    t = time.process_time()
    for s in range(0, len(records), batch):
        chunk = records[s : s + batch]
        base = new_id().int & ~((1 << 32) - 1)
        for r, i in zip(chunk, map("%032x".__mod__, range(base, base + len(chunk))), strict=True):
            r[0] = i
        blob, _ = encode_records(chunk)
        zlib.crc32(blob)  # the journal block's checksum
    return (time.process_time() - t) / len(records) * 1e6


def bench(url: str, n: int, many_n: int, chains: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    events = make_events(n)
    out["serialize_us_per_event"] = writer_share_us(events)
    blobs = [
        encode_records([e.record() for e in events[s : s + 10_000]])[0] for s in range(0, n, 10_000)
    ]

    name = f"ct_bench_{uuid.uuid4().hex[:8]}"
    db = fresh_db(url, name)
    try:
        with connect(db, autocommit=True) as conn:
            t = time.perf_counter()
            for blob in blobs:
                write_ndjson(conn, blob)
            out["copy_events_per_s"] = n / (time.perf_counter() - t)
            t = time.perf_counter()
            for blob in blobs:  # every id is there already: all conflicts
                write_ndjson(conn, blob)
            out["copy_replay_of_stored_events_per_s"] = n / (time.perf_counter() - t)
            conn.execute("TRUNCATE chain_history")
            params = [_param_row(e) for e in events[:many_n]]
            t = time.perf_counter()
            with conn.cursor() as cur:
                for s in range(0, many_n, 1000):
                    with conn.transaction():
                        cur.executemany(_INSERT, params[s : s + 1000])
            out["executemany_events_per_s"] = many_n / (time.perf_counter() - t)
            conn.execute("TRUNCATE chain_history")
        with tempfile.TemporaryDirectory() as spool:
            records = fresh_records(make_events(n))
            t = time.perf_counter()
            with ChainWriter(db, spool_dir=Path(spool), max_queue=n) as writer:
                for r in records:
                    writer.emit_record(r)
                emit_s = time.perf_counter() - t
                assert writer.flush(600)
                stats = writer.stats
            out["writer_events_per_s"] = n / (time.perf_counter() - t)
            out["emit_us_per_event"] = emit_s / n * 1e6
            out["writer_stats"] = {"written": stats.written, "dropped": stats.dropped}
        out["caller_us_per_step"] = caller_cost(chains * 5)
        out["overhead_70us_steps"] = overhead(db, chains, [cpu_step(2_000)] * 6)
        out["overhead_700us_steps"] = overhead(db, max(chains // 10, 50), [cpu_step(20_000)] * 6)
        out["overhead_agent_like"] = overhead(db, max(chains // 40, 30), agent_like_steps())
    finally:
        drop_db(url, name)
    return out


def work(k: int) -> float:
    acc = 0.0
    for i in range(k):
        acc += i * 0.5
    return acc


def cpu_step(k: int) -> Callable[[], object]:
    return lambda: work(k)


def wait_step(seconds: float) -> Callable[[], object]:
    return lambda: time.sleep(seconds)


def agent_like_steps() -> list[Callable[[], object]]:
    """Per-step work shaped like the agent's bar chain (see BENCHMARKS.md, serving and the
    agent): collector 0.2 ms CPU, validator 3 ms CPU, prediction a 10 ms wait (the HTTP
    round trip) after 0.1 ms CPU, decision 0.05 ms, risk 0.1 ms, execution a 1 ms wait."""
    prediction_cpu = cpu_step(300)
    return [
        cpu_step(5_500),
        cpu_step(80_000),
        lambda: (prediction_cpu(), time.sleep(0.010)),
        cpu_step(1_400),
        cpu_step(2_800),
        wait_step(0.001),
    ]


class _DropSink:
    """A sink that takes records and drops them: what remains is the caller's cost."""

    def emit(self, event: ChainEvent) -> None:
        pass

    def emit_record(self, record: Record) -> None:
        pass


def _traced_chain(sink: Any, steps: Sequence[Callable[[], object]]) -> None:
    ctx = ChainContext(sink, source_service="bench")
    for name, step in zip(SERVICES, steps, strict=True):
        with ctx.step(name) as trace:
            trace.metadata["symbol"] = "EURUSD"
            if name == "prediction":
                with trace.dependency("serving", "/predict"):
                    step()
            else:
                step()


def caller_cost(chains: int) -> dict[str, float]:
    """µs per step on the caller's thread: traced steps doing nothing minus bare steps."""
    nothing = [lambda: None] * 6
    sink = _DropSink()

    def off() -> float:
        t = time.perf_counter()
        for _ in range(chains):
            for step in nothing:
                step()
        return time.perf_counter() - t

    def on() -> float:
        t = time.perf_counter()
        for _ in range(chains):
            _traced_chain(sink, nothing)
        return time.perf_counter() - t

    offs, ons = [], []
    for _ in range(7):
        offs.append(off())
        ons.append(on())
    return {
        "best_us_per_step": (min(ons) - min(offs)) / (chains * 6) * 1e6,
        "median_us_per_step": (statistics.median(ons) - statistics.median(offs))
        / (chains * 6)
        * 1e6,
    }


def overhead(db: str, chains: int, steps: Sequence[Callable[[], object]]) -> dict[str, Any]:
    """Chains of ``steps``; tracing off vs on, 7 alternating rounds each."""

    def off() -> tuple[float, float]:
        t, c = time.perf_counter(), time.process_time()
        for _ in range(chains):
            for step in steps:
                step()
        return time.perf_counter() - t, time.process_time() - c

    with tempfile.TemporaryDirectory() as spool, ChainWriter(db, spool_dir=Path(spool)) as w:

        def on() -> tuple[float, float]:
            t, c = time.perf_counter(), time.process_time()
            for _ in range(chains):
                _traced_chain(w, steps)
            assert w.flush(120)  # the writer's work counts too
            return time.perf_counter() - t, time.process_time() - c

        offs, ons = [], []
        for _ in range(7):
            offs.append(off())
            ons.append(on())
        stats = w.stats
    n_steps = chains * 6
    best_off, best_on = min(o[0] for o in offs), min(o[0] for o in ons)
    med_off, med_on = statistics.median(o[0] for o in offs), statistics.median(o[0] for o in ons)
    cpu_off, cpu_on = min(o[1] for o in offs), min(o[1] for o in ons)
    return {
        "chains": chains,
        "step_us": best_off / n_steps * 1e6,
        "off_s": best_off,
        "on_s": best_on,
        "median_off_s": med_off,
        "median_on_s": med_on,
        "overhead_pct": (best_on / best_off - 1) * 100,
        "overhead_us_per_step": (best_on - best_off) / n_steps * 1e6,
        "median_overhead_pct": (med_on / med_off - 1) * 100,
        "cpu_off_s": cpu_off,
        "cpu_on_s": cpu_on,
        "cpu_overhead_us_per_step": (cpu_on - cpu_off) / n_steps * 1e6,
        "events_written": stats.written,
        "events_dropped": stats.dropped,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=os.environ.get("CHAINTRADE_DB_URL"), required=False)
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--executemany-events", type=int, default=50_000)
    ap.add_argument("--chains", type=int, default=2_000)
    args = ap.parse_args()
    if not args.db:
        raise SystemExit("--db or CHAINTRADE_DB_URL is required")
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} CPU, {platform.python_version()}",
        "load_average": os.getloadavg(),
        "events": args.events,
        **bench(args.db, args.events, args.executemany_events, args.chains),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
