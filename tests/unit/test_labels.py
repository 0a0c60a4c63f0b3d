from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from chaintrade.features import compute_features
from chaintrade.labels import direction_labels
from chaintrade.market_data import synthetic_bars


def _bars(symbol: str, closes: list[float], timeframe: str = "M15") -> pd.DataFrame:
    times = pd.date_range("2024-03-04 00:00", periods=len(closes), freq="15min", tz="UTC")
    return pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": timeframe,
            "time": times,
            "open": closes,
            "high": closes,
            "low": closes,
            "close": closes,
            "tick_volume": 1,
            "spread": 0,
            "real_volume": 0,
        }
    )


def test_one_bar_ahead_labels_on_a_hand_made_series() -> None:
    bars = pd.concat([_bars("AAA", [1.0, 2.0, 1.0, 1.0, 4.0]), _bars("BBB", [3.0, 1.0, 1.5])])
    labels = direction_labels(bars, horizon_bars=1)

    assert list(labels.columns) == ["symbol", "time", "event_timestamp", "forward_return", "label"]
    # the last bar of each symbol has no future: 4 + 2 rows remain
    assert list(labels["symbol"]) == ["AAA"] * 4 + ["BBB"] * 2
    np.testing.assert_allclose(
        labels["forward_return"],
        [math.log(2.0), math.log(0.5), 0.0, math.log(4.0), math.log(1 / 3), math.log(1.5)],
    )
    # a zero return is not "up"
    assert list(labels["label"]) == [1, 0, 0, 1, 0, 1]
    assert labels["label"].dtype == np.int64
    start = pd.Timestamp("2024-03-04 00:00", tz="UTC")
    assert list(labels["time"].iloc[:4]) == [start + pd.Timedelta(minutes=15 * i) for i in range(4)]
    # event_timestamp is the close of bar t: open + 15 minutes
    assert list(labels["event_timestamp"].iloc[:4]) == [
        start + pd.Timedelta(minutes=15 * (i + 1)) for i in range(4)
    ]


def test_longer_horizon_drops_the_last_h_bars_per_symbol() -> None:
    bars = pd.concat([_bars("BBB", [3.0, 1.0, 1.5]), _bars("AAA", [1.0, 2.0, 1.0, 1.0, 4.0])])
    labels = direction_labels(bars, horizon_bars=2)

    assert list(labels["symbol"]) == ["AAA", "AAA", "AAA", "BBB"]
    np.testing.assert_allclose(
        labels["forward_return"], [0.0, math.log(0.5), math.log(4.0), math.log(0.5)]
    )
    assert list(labels["label"]) == [0, 0, 1, 0]


def test_a_symbol_shorter_than_the_horizon_gets_no_labels() -> None:
    labels = direction_labels(_bars("AAA", [1.0, 2.0]), horizon_bars=2)
    assert labels.empty
    assert list(labels.columns) == ["symbol", "time", "event_timestamp", "forward_return", "label"]


def test_horizon_must_be_positive() -> None:
    with pytest.raises(ValueError, match="horizon_bars"):
        direction_labels(_bars("AAA", [1.0, 2.0]), horizon_bars=0)


def test_labels_join_features_at_the_same_instant() -> None:
    bars = synthetic_bars("EURUSD", timeframe="H1", start="2024-01-01", n=100, seed=2)
    features = compute_features(bars, "H1")
    labels = direction_labels(bars, horizon_bars=3)
    joined = features.merge(labels, on=["symbol", "event_timestamp"], suffixes=("", "_label"))

    assert len(joined) == 97
    assert (joined["time"] == joined["time_label"]).all()
    expected = np.log(bars["close"].to_numpy()[3:] / bars["close"].to_numpy()[:-3])
    np.testing.assert_allclose(joined["forward_return"], expected, rtol=0, atol=1e-15)
