"""Load generator for bench_serving.py, run as its own process.

    python benchmarks/serving_load.py URL RATE BARS_JSON OUT_JSON

Sends each bar once, in order, open-loop at RATE requests/s (0: as fast as possible) over
one reused connection, and writes per-request latencies (ms) and status codes.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import httpx


def main() -> None:
    url, rate, bars_path, out_path = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
    bars = json.loads(Path(bars_path).read_text())
    latencies, statuses = [], []
    interval = 1.0 / rate if rate > 0 else 0.0
    with httpx.Client(base_url=url, timeout=10.0) as client:
        started = time.perf_counter()
        for i, bar in enumerate(bars):
            due = started + i * interval
            pause = due - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            t0 = time.perf_counter()
            response = client.post("/predict", json={"bar": bar})
            latencies.append((time.perf_counter() - t0) * 1e3)
            statuses.append(response.status_code)
        elapsed = time.perf_counter() - started
    Path(out_path).write_text(
        json.dumps({"latencies_ms": latencies, "statuses": statuses, "elapsed_s": elapsed})
    )


if __name__ == "__main__":
    main()
