"""Paper = backtest on the real EURUSD H1 sample, per closed trade, for a trained model.

Trains the ensemble on the 5,000 real bars as the training DAG does (features + labels joined
on the bar, walk-forward splits, zero costs), then on the test window compares each trade of

* the training backtest (:func:`chaintrade.training.score`: the fill at the next bar's open),
* the previous training convention (close-to-close: ``ret_1`` of the bar after the decision),

with the same predictions replayed through agent + simulator (:mod:`live_agent.parity`). A
second scenario does the same for the busier momentum signal of the parity test (the last
1,500 bars, more trades across weekend gaps).

    uv run python benchmarks/bench_paper_parity.py

Writes ``benchmarks/results/paper_parity.json``.
"""

from __future__ import annotations

import json
import platform
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chaintrade.evaluation import Costs, Rule, strategy_backtest
from chaintrade.features import compute_features, feature_columns
from chaintrade.labels import direction_labels
from chaintrade.market_data import load_ohlcv_csv
from chaintrade.training import TrainConfig, fit_ensemble, score
from live_agent.parity import paper_vs_backtest

DATA = Path(__file__).resolve().parents[1] / "data" / "EURUSD_H1_2017-04_2018-02.csv"
RESULTS = Path(__file__).resolve().parent / "results" / "paper_parity.json"


def _per_trade(backtest_bp: np.ndarray, paper_bp: np.ndarray) -> dict[str, float]:
    diff = np.abs(backtest_bp - paper_bp)
    return {"max_abs_diff_bp": float(diff.max()), "mean_abs_diff_bp": float(diff.mean())}


def _compare(
    frame: pd.DataFrame, bars: pd.DataFrame, strength: np.ndarray, rule: Rule, now: Any
) -> dict[str, Any]:
    """``frame``'s rows (features + labels) traded on ``strength`` against the paper replay of
    ``bars`` (every bar from the first row on): now (``now``, a training backtest) and before
    (close to close)."""
    close_to_close = frame["ret_1_H1"].shift(-1).fillna(0.0).to_numpy()
    before = strategy_backtest(
        strength,
        close_to_close,
        frame["symbol"].to_numpy(),
        frame["event_timestamp"].to_numpy(),
        costs=Costs(0, 0, 0),
        rule=rule,
        bars_per_year=1,
    )
    signal = pd.Series(strength, index=frame["time"]).reindex(bars["time"]).to_numpy()
    report = paper_vs_backtest(bars, signal, rule=rule)
    paper = np.array([t.paper_bp for t in report.trades])
    out: dict[str, Any] = {
        "bars": [str(bars["time"].iloc[0]), str(bars["time"].iloc[-1])],
        "rule": {"buy": rule.buy, "close_band": rule.close_band},
        "matched": report.matched,
        "trades_compared": len(report.trades),
    }
    for name, result in (("next_open (now)", now), ("close_to_close (before)", before)):
        closed = [t for t in result.trades if t.closed]
        if len(closed) != len(paper):
            out[name] = {"trades": len(closed), "note": "not the paper's trade list"}
            continue
        bp = np.array([t.log_return for t in closed]) * 1e4
        out[name] = {"trades": len(closed), **_per_trade(bp, paper)}
    return out


def measure() -> dict[str, Any]:
    bars = load_ohlcv_csv(DATA, symbol="EURUSD", timeframe="H1").reset_index(drop=True)
    frame = compute_features(bars, "H1").merge(
        direction_labels(bars, horizon_bars=1), on=["symbol", "time", "event_timestamp"]
    )
    frame = frame[~frame["warmup"]].dropna(subset=feature_columns("H1")).reset_index(drop=True)
    config = TrainConfig(horizon_bars=1, costs=Costs(0, 0, 0))
    trained = fit_ensemble(frame, config)
    test = trained.splits.test.sort_values("time").reset_index(drop=True)
    strength = 2.0 * trained.ensemble.predict(test) - 1.0
    buy, band = np.quantile(np.abs(strength), [0.7, 0.3])
    rule = Rule(buy=float(buy), sell=-float(buy), close_band=float(band))
    _, now = score(trained.ensemble, test, replace(config, rule=rule))
    window = bars[bars["time"] >= test["time"].iloc[0]].reset_index(drop=True)
    model = _compare(test, window, strength, rule, now)

    # the parity test's momentum signal (6-bar log return, tanh-scaled) on the last 1,500 bars
    held = frame[frame["time"] >= bars["time"].iloc[-1500]].reset_index(drop=True)
    log_close = pd.Series(np.log(bars["close"].to_numpy()), index=bars["time"])
    momentum = (log_close - log_close.shift(6)).reindex(held["time"]).to_numpy()
    signal = np.tanh(momentum / 0.002)
    rule = Rule(buy=0.6, sell=-0.6, close_band=0.2)
    now = strategy_backtest(
        signal,
        held["next_open_return"].to_numpy(),
        held["symbol"].to_numpy(),
        held["event_timestamp"].to_numpy(),
        costs=Costs(0, 0, 0),
        rule=rule,
        bars_per_year=1,
    )
    window = bars[bars["time"] >= held["time"].iloc[0]].reset_index(drop=True)
    return {
        "data": DATA.name,
        "machine": platform.platform(),
        "trained_model_test_window": model,
        "momentum_signal_last_1500_bars": _compare(held, window, signal, rule, now),
    }


def main() -> None:
    result = measure()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
