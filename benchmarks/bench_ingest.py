"""Market-data ingest at scale: generate, validate, resample, lake, GE and COPY into PostgreSQL.

    uv run python benchmarks/bench_ingest.py --symbols 10 --bars 1000000 \
        --db postgresql://postgres@127.0.0.1:5432/test

Writes ``benchmarks/results/ingest.json``. A fresh database is created on the server of
``--db`` (and dropped after) so the COPY figures start from an empty ``market_data``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "ingest.json"


def timed(label: str, rows: int, fn: Callable[[], Any], out: dict[str, Any]) -> Any:
    started = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - started
    out[label] = {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}
    print(
        f"{label:28s} {rows:>12,} rows {seconds:8.2f} s {rows / seconds:>14,.0f} rows/s", flush=True
    )
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--bars", type=int, default=1_000_000, help="M1 bars per symbol")
    parser.add_argument("--db", default=os.environ.get("CHAINTRADE_DB_URL"))
    parser.add_argument("--ge", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()

    from chaintrade.db import connect, migrate, with_database
    from chaintrade.lake import write_bars
    from chaintrade.market_data import synthetic_market
    from chaintrade.market_store import copy_into_stage, load_bars
    from chaintrade.resample import resample_bars
    from chaintrade.validation import UTC_WEEKDAYS, validate_bars

    n = args.symbols * args.bars
    res: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
        "symbols": args.symbols,
        "bars_per_symbol": args.bars,
    }
    bars = timed(
        "generate (M1 bars)",
        n,
        lambda: synthetic_market(args.symbols, timeframe="M1", n=args.bars, seed=1),
        res,
    )
    result = timed(
        "validate (all rules)", n, lambda: validate_bars(bars, calendar=UTC_WEEKDAYS), res
    )
    res["validate (all rules)"]["rejected"] = result.rejected
    timed("resample M1 -> H1", n, lambda: resample_bars(result.good, "H1"), res)
    lake = Path(tempfile.mkdtemp(prefix="bench-lake-"))
    try:
        files = timed("lake write (symbol/date)", n, lambda: write_bars(result.good, lake), res)
        res["lake write (symbol/date)"]["partitions"] = len(files)
        timed("lake re-ingest (merge)", n, lambda: write_bars(result.good, lake), res)
    finally:
        shutil.rmtree(lake, ignore_errors=True)
    if args.ge:
        from chaintrade.quality import validate_bars_with_ge

        docs = Path(tempfile.mkdtemp(prefix="bench-docs-"))
        try:
            report = timed(
                "great expectations suite",
                n,
                lambda: validate_bars_with_ge(result.good, run_name="bench", docs_dir=docs),
                res,
            )
            res["great expectations suite"]["success"] = report.success
        finally:
            shutil.rmtree(docs, ignore_errors=True)
    if args.db:
        name = f"bench_{uuid.uuid4().hex[:10]}"
        with connect(args.db, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        url = with_database(args.db, name)
        try:
            migrate(url)

            def copy_only() -> None:
                with connect(url) as conn, conn.transaction(), conn.cursor() as cur:
                    copy_into_stage(cur, result.good)

            timed("binary COPY into staging", n, copy_only, res)
            timed("load_bars (COPY + upsert)", n, lambda: load_bars(url, result.good), res)
            timed("load_bars again (no-op)", n, lambda: load_bars(url, result.good), res)
        finally:
            with connect(args.db, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
