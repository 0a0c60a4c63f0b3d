"""Chain tracing throughput and overhead against a real PostgreSQL.

    uv run python benchmarks/bench_chain.py --db postgresql://postgres@127.0.0.1:5432/test
    uv run python benchmarks/bench_chain.py --db ... --events 1000000

Figures (each on a fresh database with every migration applied):
- serialize: ``event_row`` per event (Python, the writer thread's share);
- copy: ``write_rows`` (binary COPY straight into ``chain_history``) in 10 k batches;
- copy_replay: the idempotent path (COPY into a staging table + INSERT ON CONFLICT);
- executemany: ``INSERT ... ON CONFLICT DO NOTHING`` with ``executemany`` (1 k batches);
- writer: ``ChainWriter.emit`` N events, then ``flush`` (journal on), end to end;
- overhead: a loop of 6-step chains with a fixed CPU workload per step, tracing off
  vs on (ChainContext + ChainWriter into the database).

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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chaintrade.chain import ChainContext, ChainEvent, Dependency, new_id
from chaintrade.chain_store import ChainWriter, event_row, write_rows
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


def bench(url: str, n: int, many_n: int, chains: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    events = make_events(n)
    t = time.perf_counter()
    rows = [event_row(e) for e in events]
    out["serialize_us_per_event"] = (time.perf_counter() - t) / n * 1e6

    name = f"ct_bench_{uuid.uuid4().hex[:8]}"
    db = fresh_db(url, name)
    try:
        with connect(db, autocommit=True) as conn:
            t = time.perf_counter()
            for s in range(0, n, 10_000):
                write_rows(conn, rows[s : s + 10_000])
            out["copy_events_per_s"] = n / (time.perf_counter() - t)
            conn.execute("TRUNCATE chain_history")
            t = time.perf_counter()
            for s in range(0, n, 10_000):
                write_rows(conn, rows[s : s + 10_000], fresh=False)
            out["copy_replay_events_per_s"] = n / (time.perf_counter() - t)
            conn.execute("TRUNCATE chain_history")
            t = time.perf_counter()
            with conn.cursor() as cur:
                for s in range(0, many_n, 1000):
                    with conn.transaction():
                        cur.executemany(_INSERT, rows[s : s + 1000])
            out["executemany_events_per_s"] = many_n / (time.perf_counter() - t)
            conn.execute("TRUNCATE chain_history")
        with tempfile.TemporaryDirectory() as spool:
            fresh = make_events(n)
            t = time.perf_counter()
            with ChainWriter(db, spool_dir=Path(spool), max_queue=n) as writer:
                for e in fresh:
                    writer.emit(e)
                emit_s = time.perf_counter() - t
                assert writer.flush(600)
                stats = writer.stats
            out["writer_events_per_s"] = n / (time.perf_counter() - t)
            out["emit_us_per_event"] = emit_s / n * 1e6
            out["writer_stats"] = {"written": stats.written, "dropped": stats.dropped}
        out["overhead"] = overhead(db, chains)
        out["overhead_1ms_steps"] = overhead(db, max(chains // 7, 50), k=20_000)
    finally:
        drop_db(url, name)
    return out


def work(k: int) -> float:
    acc = 0.0
    for i in range(k):
        acc += i * 0.5
    return acc


def overhead(db: str, chains: int, k: int = 2000) -> dict[str, Any]:
    """6 steps of ``work(k)`` per chain; tracing off vs on (best of 5 rounds each)."""

    def off() -> float:
        t = time.perf_counter()
        for _ in range(chains):
            for _ in SERVICES:
                work(k)
        return time.perf_counter() - t

    with tempfile.TemporaryDirectory() as spool, ChainWriter(db, spool_dir=Path(spool)) as w:

        def on() -> float:
            t = time.perf_counter()
            for _ in range(chains):
                ctx = ChainContext(w, source_service="bench")
                for s in SERVICES:
                    with ctx.step(s) as step:
                        step.metadata["symbol"] = "EURUSD"
                        work(k)
            return time.perf_counter() - t

        offs, ons = [], []
        for _ in range(5):
            offs.append(off())
            ons.append(on())
        assert w.flush(120)
    best_off, best_on = min(offs), min(ons)
    step_us = best_off / (chains * 6) * 1e6
    return {
        "chains": chains,
        "step_work_us": step_us,
        "off_s": best_off,
        "on_s": best_on,
        "median_off_s": statistics.median(offs),
        "median_on_s": statistics.median(ons),
        "overhead_pct": (best_on / best_off - 1) * 100,
        "overhead_us_per_step": (best_on - best_off) / (chains * 6) * 1e6,
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
        "events": args.events,
        **bench(args.db, args.events, args.executemany_events, args.chains),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
