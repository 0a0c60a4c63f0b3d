"""Features + labels for 1 M and 10 M generated M1 bars: Spark local[2] against one process.

The floor is the same code (``compute_features`` + ``all_labels`` per symbol) in this one
Python process, numpy-vectorized. Spark runs ``spark_jobs.build_features.run`` (chunks with
warm-up overlap, applyInPandas, partitioned Parquet out), session start included; the floor
includes nothing but the computation (no Parquet write), so the ratio is conservative.

    uv run python benchmarks/bench_features.py            # 1 M and 10 M
    uv run python benchmarks/bench_features.py --sizes 1000000

Writes ``benchmarks/results/features.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from chaintrade.features import compute_features
from chaintrade.labels import all_labels
from chaintrade.market_data import synthetic_bars
from chaintrade.pipeline import write_lake

SYMBOLS = ("EURUSD", "GBPUSD", "USDJPY", "AUDUSD")
RESULTS = Path(__file__).resolve().parent / "results" / "features.json"


def generate(n: int) -> pd.DataFrame:
    per = n // len(SYMBOLS)
    parts = [synthetic_bars(s, timeframe="M1", start="1990-01-01", n=per, seed=7) for s in SYMBOLS]
    return pd.concat(parts, ignore_index=True)


def floor(bars: pd.DataFrame) -> dict[str, float]:
    started = time.perf_counter()
    rows = 0
    for _, group in bars.groupby("symbol", sort=True):
        g = group.reset_index(drop=True)
        features = compute_features(g, "M1")
        labels = all_labels(g, horizon_bars=15, max_bars=15)
        rows += len(features)
        del features, labels
    return {"seconds": time.perf_counter() - started, "rows": rows}


def spark(lake: Path, out: Path, master: str) -> dict[str, Any]:
    from spark_jobs.build_features import run

    started = time.perf_counter()
    counts = run(
        str(lake / "bars"),
        str(out),
        timeframe="M1",
        horizon_bars=15,
        max_bars=15,
        master=master,
        spark_conf={"spark.driver.memory": "8g", "spark.sql.shuffle.partitions": "8"},
    )
    return {"seconds": time.perf_counter() - started, **counts}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--master", default="local[2]")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "master": args.master,
        "runs": [],
    }
    for n in args.sizes:
        work = Path(tempfile.mkdtemp(prefix="chaintrade-bench-"))
        try:
            bars = generate(n)
            write_lake(bars, work / "lake")
            f = floor(bars)
            del bars
            s = spark(work / "lake", work / "offline", args.master)
            run = {
                "bars": n,
                "floor_s": round(f["seconds"], 2),
                "spark_s": round(s["seconds"], 2),
                "ratio": round(s["seconds"] / f["seconds"], 2),
                "floor_us_per_row": round(f["seconds"] / n * 1e6, 3),
                "spark_us_per_row": round(s["seconds"] / n * 1e6, 3),
                "feature_rows": s["features"],
                "label_rows": s["labels"],
            }
            print(json.dumps(run), flush=True)
            results["runs"].append(run)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    if len(results["runs"]) >= 2:
        small, large = results["runs"][0], results["runs"][-1]
        results["spark_per_row_growth"] = round(
            large["spark_us_per_row"] / small["spark_us_per_row"], 2
        )
        results["floor_per_row_growth"] = round(
            large["floor_us_per_row"] / small["floor_us_per_row"], 2
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
