"""Load generator for bench_serving.py, run as its own process.

    python benchmarks/serving_load.py URL RATE BARS_JSON OUT_JSON [CONNECTIONS]

Sends each bar once, in order, open-loop at RATE requests/s (0: as fast as possible) over
one reused HTTP/1.1 connection (``http.client``, as the agent's ServingClient: each request
in one write, so no Nagle/delayed-ACK stall), and writes per-request latencies (ms) and
status codes. With
CONNECTIONS > 1 (unpaced only) the bars are split by symbol over that many connections,
each sending its symbols' bars in time order, so several requests are in flight at once.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def send(url: str, bars: list[dict[str, Any]], interval: float) -> tuple[list[float], list[int]]:
    latencies, statuses = [], []
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10.0)
    headers = {"Content-Type": "application/json"}
    try:
        started = time.perf_counter()
        for i, bar in enumerate(bars):
            pause = started + i * interval - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            body = json.dumps({"bar": bar}).encode()
            t0 = time.perf_counter()
            conn.request("POST", "/predict", body, headers)
            response = conn.getresponse()
            response.read()
            latencies.append((time.perf_counter() - t0) * 1e3)
            statuses.append(response.status)
    finally:
        conn.close()
    return latencies, statuses


def main() -> None:
    url, rate, bars_path, out_path = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
    connections = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    bars = json.loads(Path(bars_path).read_text())
    interval = 1.0 / rate if rate > 0 else 0.0
    symbols = sorted({b["symbol"] for b in bars})
    groups = [
        [b for b in bars if symbols.index(b["symbol"]) % connections == k]
        for k in range(connections)
    ]
    results: list[tuple[list[float], list[int]]] = [([], [])] * connections

    def run(k: int) -> None:
        results[k] = send(url, groups[k], interval)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(connections)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    Path(out_path).write_text(
        json.dumps(
            {
                "latencies_ms": [x for lat, _ in results for x in lat],
                "statuses": [s for _, st in results for s in st],
                "elapsed_s": elapsed,
                "connections": connections,
            }
        )
    )


if __name__ == "__main__":
    main()
