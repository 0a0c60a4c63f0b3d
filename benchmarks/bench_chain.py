"""Chain tracing throughput and overhead against a real PostgreSQL.

    uv run python benchmarks/bench_chain.py --db postgresql://postgres@127.0.0.1:5432/test
    uv run python benchmarks/bench_chain.py --db ... --events 1000000
    uv run python benchmarks/bench_chain.py --db ... --parts overhead --rounds 21

Figures (each on a fresh database with every migration applied):
- serialize: the writer thread's Python share per event before the database (ids, one
  msgspec call per batch, the journal block's checksum);
- copy: the new path, ``copy_records`` (one binary COPY of the batch's records straight
  into ``chain_history``; the records' conversion is included, on the client) beside the
  previous path, ``write_ndjson`` (COPY of the JSON lines into a staging table, then
  ``INSERT ... ON CONFLICT DO NOTHING``; PostgreSQL parses the JSON), 10 k batches, on an
  emptied table each, alternating, best of ``--copy-rounds``; with the client CPU per
  event of each;
- executemany: ``INSERT ... ON CONFLICT DO NOTHING`` with ``executemany`` (1 k batches);
- writer: ``ChainWriter.emit_record`` N events, then ``flush``, end to end (full batches:
  binary COPY), with the journal fsync'd per batch (default), only written
  (``journal_fsync=False``), and every batch sent the JSON way (the previous path);
- caller: what a traced step costs on the caller's thread (``ChainContext.step`` with
  metadata and a dependency, into a sink that drops the record);
- overhead: chains of 6 steps, tracing off vs on (ChainContext + ChainWriter into the
  database, default settings), for three step workloads: a tight CPU loop of ~70 µs per
  step, ~700 µs per step, and an agent-like chain (CPU steps of 0.1-3 ms and two waits
  standing in for the serving and terminal round trips). ``--rounds`` off/on pairs of
  about a second each alternate. Each on round ends with ``flush``: its time is the
  traced loop's plus the writer thread's CPU during that flush (all of the writer's work
  on the round's events is inside it, not the wait for the last batch's I/O, which a
  loop that goes on overlaps). Reported: wall time best vs best and median vs median,
  the median of the pairs' ratios and their quartiles (other load on the machine hits
  both halves of a pair alike), the process's CPU time (both threads; median of the
  pairs' differences) and the writer thread's own CPU per event (its thread clock).
  ``accounted_overhead_pct`` is (caller µs per step + writer thread CPU µs per event) /
  median step time: the CPU that tracing adds, which wall-time differences of a few per
  cent cannot resolve on a busy machine.

Other processes on the machine move these figures; compare runs made in the same minute.
Writes ``benchmarks/results/chain.json`` (or ``--out``). ``--parts overhead`` needs only
``ChainWriter``: with ``PYTHONPATH`` at a checkout of an earlier commit it measures that
commit's writer the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec

import chaintrade.chain_store as chain_store
from chaintrade.chain import ChainContext, ChainEvent, Dependency, Record, new_id
from chaintrade.db import connect, migrate, with_database

RESULTS = Path(__file__).resolve().parent / "results" / "chain.json"
PARTS = ("copy", "writer", "overhead")
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
        blob, _ = chain_store.encode_records(chunk)
        zlib.crc32(blob)  # the journal block's checksum
    return (time.process_time() - t) / len(records) * 1e6


def with_ids(records: list[Record]) -> list[Record]:
    """The records with their ids set, as the writer thread sends them."""
    for chunk_start in range(0, len(records), 10_000):
        chunk = records[chunk_start : chunk_start + 10_000]
        base = new_id().int & ~((1 << 32) - 1)
        for r, i in zip(chunk, map("%032x".__mod__, range(base, base + len(chunk))), strict=True):
            r[0] = i
    return records


def copy_paths(conn: Any, n: int, rounds: int) -> dict[str, Any]:
    """Events/s and client CPU/event of the new (binary) and previous (NDJSON) COPY paths."""
    out: dict[str, Any] = {}
    records = with_ids(fresh_records(make_events(n)))
    batches = [records[s : s + 10_000] for s in range(0, n, 10_000)]
    blobs = [chain_store.encode_records(b)[0] for b in batches]

    def timed(write: Callable[[], None]) -> tuple[float, float]:
        conn.execute("TRUNCATE chain_history")
        t, c = time.perf_counter(), time.process_time()
        write()
        return n / (time.perf_counter() - t), (time.process_time() - c) / n * 1e6

    def ndjson() -> None:
        for blob in blobs:
            chain_store.write_ndjson(conn, blob)

    def binary() -> None:
        for batch in batches:
            chain_store.copy_records(conn, batch)

    runs: dict[str, list[tuple[float, float]]] = {"binary": [], "ndjson": []}
    for _ in range(rounds):
        runs["ndjson"].append(timed(ndjson))
        runs["binary"].append(timed(binary))
    for name, key in (("binary", "copy_events_per_s"), ("ndjson", "copy_ndjson_events_per_s")):
        best = max(runs[name])
        out[key] = best[0]
        out[f"{key}_runs"] = [r[0] for r in runs[name]]
        out[key.replace("events_per_s", "client_cpu_us_per_event")] = best[1]
    t = time.perf_counter()
    ndjson()  # every id is there already: all conflicts
    out["copy_replay_of_stored_events_per_s"] = n / (time.perf_counter() - t)
    conn.execute("TRUNCATE chain_history")
    return out


def writer_end_to_end(db: str, n: int, **writer_options: Any) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as spool:
        records = fresh_records(make_events(n))
        t = time.perf_counter()
        with chain_store.ChainWriter(
            db, spool_dir=Path(spool), max_queue=n, **writer_options
        ) as writer:
            for r in records:
                writer.emit_record(r)
            emit_s = time.perf_counter() - t
            assert writer.flush(600)
            stats = writer.stats
        return {
            "events_per_s": n / (time.perf_counter() - t),
            "emit_us_per_event": emit_s / n * 1e6,
            "written": stats.written,
            "dropped": stats.dropped,
        }


def bench(url: str, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n, parts, rounds = args.events, set(args.parts), args.rounds
    name = f"ct_bench_{uuid.uuid4().hex[:8]}"
    db = fresh_db(url, name)
    try:
        if "copy" in parts:
            out["serialize_us_per_event"] = writer_share_us(make_events(n))
            with connect(db, autocommit=True) as conn:
                out.update(copy_paths(conn, n, args.copy_rounds))
                many_n = args.executemany_events
                params = [_param_row(e) for e in make_events(many_n)]
                t = time.perf_counter()
                with conn.cursor() as cur:
                    for s in range(0, many_n, 1000):
                        with conn.transaction():
                            cur.executemany(_INSERT, params[s : s + 1000])
                out["executemany_events_per_s"] = many_n / (time.perf_counter() - t)
                conn.execute("TRUNCATE chain_history")
        if "writer" in parts:
            for key, options in (
                ("writer", {"journal_fsync": True}),
                ("writer_journal_write_only", {"journal_fsync": False}),
                ("writer_json_copy_only", {"journal_fsync": True, "binary_min_batch": n + 1}),
            ):
                out[key] = writer_end_to_end(db, n, **options)
                with connect(db, autocommit=True) as conn:
                    conn.execute("TRUNCATE chain_history")
        if "overhead" in parts:
            caller = out["caller_us_per_step"] = caller_cost(10_000)
            for key, chains, steps in (
                ("overhead_70us_steps", 1_500, [cpu_step(2_000)] * 6),
                ("overhead_700us_steps", 150, [cpu_step(20_000)] * 6),
                ("overhead_agent_like", 60, agent_like_steps()),
            ):
                result = out[key] = overhead(db, chains, steps, rounds)
                result["accounted_overhead_pct"] = (
                    (caller["median_us_per_step"] + result["writer_thread_cpu_us_per_event"])
                    / result["median_step_us"]
                    * 100
                )
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

    def prediction() -> None:
        work(300)
        time.sleep(0.010)

    return [
        cpu_step(5_500),
        cpu_step(80_000),
        prediction,
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


def _writer_thread_cpu() -> Callable[[], float]:
    """The chain writer thread's CPU seconds so far (its thread clock)."""
    [thread] = [t for t in threading.enumerate() if t.name == "chain-writer"]
    assert thread.ident is not None
    clock = time.pthread_getcpuclockid(thread.ident)
    return lambda: time.clock_gettime(clock)


def overhead(
    db: str,
    chains: int,
    steps: Sequence[Callable[[], object]],
    rounds: int,
    **writer_options: Any,
) -> dict[str, Any]:
    """Chains of ``steps``; tracing off vs on, ``rounds`` alternating pairs."""

    def off() -> tuple[float, float, float]:
        t, c = time.perf_counter(), time.process_time()
        for _ in range(chains):
            for step in steps:
                step()
        return time.perf_counter() - t, time.process_time() - c, 0.0

    with (
        tempfile.TemporaryDirectory() as spool,
        chain_store.ChainWriter(db, spool_dir=Path(spool), **writer_options) as w,
    ):
        writer_cpu = _writer_thread_cpu()

        def on() -> tuple[float, float, float]:
            t, c, wc = time.perf_counter(), time.process_time(), writer_cpu()
            for _ in range(chains):
                _traced_chain(w, steps)
            loop_s, flush_wc = time.perf_counter() - t, writer_cpu()
            assert w.flush(120)  # the writer's work on this round's events counts too
            cpu_s, flush_cpu = time.process_time() - c, writer_cpu() - flush_wc
            # Waiting for the last batch's I/O is not a cost of tracing (a loop that goes on
            # overlaps it); the writer's CPU while it finishes is.
            return loop_s + flush_cpu, cpu_s, writer_cpu() - wc

        on()  # warm up: connection, staging table, first journal segment
        offs, ons = [], []
        for _ in range(rounds):
            offs.append(off())
            ons.append(on())
        stats = w.stats
    n_steps = chains * 6
    wall_off, wall_on = [o[0] for o in offs], [o[0] for o in ons]
    med = statistics.median
    ratios = [b / a for a, b in zip(wall_off, wall_on, strict=True)]
    cpu_diffs = [b[1] - a[1] for a, b in zip(offs, ons, strict=True)]
    cpu_off = med(o[1] for o in offs)
    return {
        "chains": chains,
        "rounds": rounds,
        "step_us": min(wall_off) / n_steps * 1e6,
        "median_step_us": med(wall_off) / n_steps * 1e6,
        "off_s": min(wall_off),
        "on_s": min(wall_on),
        "median_off_s": med(wall_off),
        "median_on_s": med(wall_on),
        "overhead_pct": (min(wall_on) / min(wall_off) - 1) * 100,
        "median_overhead_pct": (med(wall_on) / med(wall_off) - 1) * 100,
        "paired_median_overhead_pct": (med(ratios) - 1) * 100,
        "paired_overhead_pct_quartiles": [
            (q - 1) * 100 for q in statistics.quantiles(ratios, n=4)[::2]
        ],
        "overhead_us_per_step": (med(wall_on) - med(wall_off)) / n_steps * 1e6,
        "cpu_overhead_pct": med(cpu_diffs) / cpu_off * 100,
        "cpu_overhead_us_per_step": med(cpu_diffs) / n_steps * 1e6,
        "writer_thread_cpu_us_per_event": med(o[2] for o in ons) / n_steps * 1e6,
        "events_written": stats.written,
        "events_dropped": stats.dropped,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=os.environ.get("CHAINTRADE_DB_URL"), required=False)
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--executemany-events", type=int, default=50_000)
    ap.add_argument("--copy-rounds", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15, help="off/on pairs per overhead figure")
    ap.add_argument("--parts", nargs="+", choices=("copy", "writer", "overhead"), default=PARTS)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    if not args.db:
        raise SystemExit("--db or CHAINTRADE_DB_URL is required")
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} CPU, {platform.python_version()}",
        "load_average": os.getloadavg(),
        "events": args.events,
        **bench(args.db, args),
        "load_average_after": os.getloadavg(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
