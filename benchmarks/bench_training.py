"""Training time of one XGBoost member on 1 M rows x 60 features (CPU; CUDA when present).

    uv run python benchmarks/bench_training.py [--rows 1000000] [--features 60] [--rounds 200]

Writes benchmarks/results/training.json. The floor beside it: building the DMatrix alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import xgboost as xgb


def cuda_available() -> bool:
    return bool(xgb.build_info().get("USE_CUDA")) and os.path.exists("/dev/nvidia0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.rows, args.features)).astype(np.float32)
    y = (0.2 * x[:, 0] - 0.1 * x[:, 1] + rng.normal(size=args.rows) > 0).astype(np.float32)
    started = time.perf_counter()
    dtrain = xgb.DMatrix(x, label=y)
    dmatrix_s = time.perf_counter() - started
    devices = ["cpu"] + (["cuda"] if cuda_available() else [])
    results = {}
    for device in devices:
        params = {
            "objective": "binary:logistic",
            "tree_method": "hist",
            "max_depth": 6,
            "eta": 0.05,
            "device": device,
            "nthread": os.cpu_count() or 1,
        }
        started = time.perf_counter()
        booster = xgb.train(params, dtrain, num_boost_round=args.rounds)
        seconds = time.perf_counter() - started
        results[device] = {
            "train_s": round(seconds, 2),
            "ms_per_round": round(1e3 * seconds / args.rounds, 1),
            "rows_per_s": round(args.rows * args.rounds / seconds),
        }
        del booster
    out = {
        "rows": args.rows,
        "features": args.features,
        "rounds": args.rounds,
        "dmatrix_s": round(dmatrix_s, 2),
        "results": results,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, xgboost {xgb.__version__}",
    }
    path = Path(__file__).parent / "results" / "training.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
