"""/predict latency and throughput over HTTP (a real ``bentoml serve``, load from a separate
process) beside the in-process floor (features + ensemble) measured in the same run.

    make demo   # once: a champion, a Feast store and a lake under var/
    uv run python benchmarks/bench_serving.py [--home var] [--rates 50 100 200 0]

Each hold-out bar is sent once, in time order (a closed bar is predicted once), split into
one round per rate (0 = unpaced). Writes benchmarks/results/serving.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chaintrade.demo import bentoml_serve, child_env
from chaintrade.lake import read_bars
from chaintrade.schemas import BarIn
from chaintrade.settings import Settings

HERE = Path(__file__).resolve().parent


def percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values)
    return {
        "n": int(arr.size),
        "p50_ms": round(float(np.percentile(arr, 50)), 3),
        "p99_ms": round(float(np.percentile(arr, 99)), 3),
        "mean_ms": round(float(arr.mean()), 3),
    }


def holdout_bars(settings: Settings) -> list[dict[str, Any]]:
    summary = json.loads((settings.home / "demo" / "summary.json").read_text())
    ingest = summary["ingest"]
    bars = read_bars(
        settings.lake_dir,
        symbols=ingest["symbols"],
        timeframe="H1",
        start=pd.Timestamp(ingest["holdout_start"]),
    ).sort_values(["time", "symbol"])
    return [
        json.loads(BarIn.model_validate(row).model_dump_json()) for row in bars.to_dict("records")
    ]


def floor(settings: Settings, bars: list[dict[str, Any]]) -> dict[str, Any]:
    """The same bars through the predictor in this process: no HTTP, no BentoML.

    The first bar of each symbol (lake read + seeding the feature state) is left out: it is
    paid once per symbol and replica, not per request.
    """
    from serving.predictor import Predictor
    from serving.settings import ServingSettings

    predictor = Predictor(settings, ServingSettings(push_to_feast=False))
    latencies: list[float] = []
    stages: dict[str, list[float]] = {}
    seen: set[str] = set()
    try:
        for bar in bars:
            request = BarIn.model_validate(bar)
            t0 = time.perf_counter()
            prediction = predictor.predict(request)
            elapsed = (time.perf_counter() - t0) * 1e3
            if request.symbol not in seen:
                seen.add(request.symbol)
                continue
            latencies.append(elapsed)
            for stage, ms in prediction.timings_ms.items():
                stages.setdefault(stage, []).append(ms)
    finally:
        predictor.close()
    return {**percentiles(latencies), "stages": {k: percentiles(v) for k, v in stages.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, default=Path("var"))
    parser.add_argument("--rates", type=float, nargs="+", default=[50, 100, 200, 0])
    parser.add_argument(
        "--connections",
        type=int,
        default=2,
        help="connections of an extra unpaced round (one per symbol group); 0: no such round",
    )
    parser.add_argument("--out", default="serving.json", help="file name in benchmarks/results")
    args = parser.parse_args()
    settings = Settings(home=args.home)
    os.environ["CHAINTRADE_HOME"] = str(settings.home)
    bars = holdout_bars(settings)
    plan = [(rate, 1) for rate in args.rates]
    if args.connections > 1:
        plan.append((0.0, args.connections))
    rounds = np.array_split(np.arange(len(bars)), len(plan))
    results: dict[str, Any] = {"bars": len(bars), "rounds": {}}
    with (
        tempfile.TemporaryDirectory() as tmp,
        bentoml_serve(settings, log_path=settings.home / "bench" / "bentoml.log") as url,
    ):
        for (rate, connections), idx in zip(plan, rounds, strict=True):
            chunk = Path(tmp) / f"bars_{rate}_{connections}.json"
            chunk.write_text(json.dumps([bars[i] for i in idx]))
            out = Path(tmp) / f"out_{rate}_{connections}.json"
            cmd = [sys.executable, str(HERE / "serving_load.py"), url, str(rate), str(chunk)]
            cmd += [str(out), str(connections)]
            subprocess.run(cmd, check=True, env=child_env(settings), timeout=300)
            load = json.loads(out.read_text())
            ok = [
                lat
                for lat, s in zip(load["latencies_ms"], load["statuses"], strict=True)
                if s == 200
            ]
            name = "unpaced" if rate == 0 else f"{rate:g}/s"
            if connections > 1:
                name += f", {connections} connections"
            results["rounds"][name] = {
                **percentiles(ok),
                "achieved_rps": round(len(load["statuses"]) / load["elapsed_s"], 1),
                "errors": sum(s != 200 for s in load["statuses"]),
            }
    results["floor_in_process"] = floor(settings, bars[: min(len(bars), 200)])
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    results["load_avg_1m"] = round(os.getloadavg()[0], 2)  # other work on the machine
    path = HERE / "results" / args.out
    path.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
