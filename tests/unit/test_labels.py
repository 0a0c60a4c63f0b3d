from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from chaintrade.features import compute_features
from chaintrade.labels import (
    DEFAULT_HORIZON,
    LABEL_COLUMNS,
    all_labels,
    direction_labels,
    horizon_to_bars,
    next_open_returns,
    triple_barrier_labels,
)
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

    assert list(labels.columns) == [
        "symbol", "time", "event_timestamp", "forward_return", "label", "next_open_return",
    ]  # fmt: skip
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


def test_next_open_return_is_the_agents_fill_from_the_next_open_to_the_one_after() -> None:
    """A decision at the close of bar t fills at open[t + 1] and is held to open[t + 2]; the
    close (and a weekend gap between close and open) plays no part."""
    aaa = _bars("AAA", [10.0, 11.0, 12.0, 13.0, 14.0])
    aaa["open"] = [1.0, 2.0, 4.0, 3.0, 6.0]
    bbb = _bars("BBB", [5.0, 5.0, 5.0])
    bbb["open"] = [1.0, 1.0, 0.5]
    bars = pd.concat([bbb, aaa.iloc[::-1]], ignore_index=True)  # any row order

    earned = next_open_returns(bars)
    assert earned.index.equals(bars.index)
    # rows 0..2: BBB in time order; rows 3..7: AAA from its last bar to its first
    np.testing.assert_allclose(
        earned.to_numpy(),
        [
            math.log(0.5),
            np.nan,
            np.nan,
            np.nan,
            np.nan,
            math.log(2.0),
            math.log(0.75),
            math.log(2.0),
        ],
        rtol=0,
        atol=1e-15,
    )

    labels = direction_labels(bars, horizon_bars=1)  # the column the training backtest reads
    assert list(labels["symbol"]) == ["AAA"] * 4 + ["BBB"] * 2
    np.testing.assert_allclose(
        labels["next_open_return"],
        [math.log(2.0), math.log(0.75), math.log(2.0), np.nan, math.log(0.5), np.nan],
        rtol=0,
        atol=1e-15,
    )
    # the label itself still looks at the close
    np.testing.assert_allclose(labels["forward_return"].iloc[0], math.log(11.0 / 10.0))
    with pytest.raises(ValueError, match="open"):
        direction_labels(bars.drop(columns="open"), horizon_bars=1)


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
    assert list(labels.columns) == list(LABEL_COLUMNS)


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


def test_horizon_is_a_duration_defaulting_to_15_minutes() -> None:
    assert timedelta(minutes=15) == DEFAULT_HORIZON
    assert [horizon_to_bars(tf) for tf in ("M1", "M5", "M15")] == [15, 3, 1]
    assert horizon_to_bars("H1", timedelta(hours=4)) == 4
    with pytest.raises(ValueError, match="whole number"):
        horizon_to_bars("H1")  # 15 minutes is a quarter of an H1 bar
    with pytest.raises(ValueError, match="whole number"):
        horizon_to_bars("M5", timedelta(minutes=7))
    m15 = _bars("AAA", [1.0, 2.0, 1.0, 1.0, 4.0])  # M15: the default horizon is one bar
    pd.testing.assert_frame_equal(direction_labels(m15), direction_labels(m15, horizon_bars=1))
    m5 = _bars("AAA", [1.0, 2.0, 4.0, 8.0, 1.0], timeframe="M5")
    np.testing.assert_allclose(
        direction_labels(m5)["forward_return"], [math.log(8.0), -math.log(2)]
    )
    with pytest.raises(ValueError, match="not both"):
        direction_labels(m15, horizon_bars=1, horizon=timedelta(minutes=15))


def _ohlc(symbol: str, rows: list[tuple[float, float, float]]) -> pd.DataFrame:
    """Bars from (high, low, close) rows; open = close."""
    bars = _bars(symbol, [c for _, _, c in rows])
    bars["high"] = [h for h, _, _ in rows]
    bars["low"] = [lo for _, lo, _ in rows]
    return bars


def test_triple_barrier_on_hand_made_paths() -> None:
    # ATR fixed at 1.0: take-profit 2.0 above, stop-loss 1.0 below the entry close, 3 bars
    up = _ohlc("UP", [(10, 10, 10), (10.5, 9.5, 10), (12.1, 10, 12), (10, 10, 10), (10, 10, 10)])
    down = _ohlc("DN", [(10, 10, 10), (10.2, 9.5, 9.8), (9.9, 8.9, 9.0), (9, 9, 9), (9, 9, 9)])
    flat = _ohlc("FL", [(10, 10, 10), (10.5, 9.5, 10), (10.9, 9.2, 10.1), (10.3, 9.9, 10.2)])
    both = _ohlc("BO", [(10, 10, 10), (12.5, 8.5, 10), (10, 10, 10), (10, 10, 10)])
    bars = pd.concat([up, down, flat, both], ignore_index=True)
    labels = triple_barrier_labels(
        bars, take_profit=2.0, stop_loss=1.0, max_bars=3, atr=pd.Series(1.0, index=bars.index)
    )
    first = labels.groupby("symbol").first()
    assert first.loc["UP", "tb_label"] == 1 and first.loc["UP", "tb_bars"] == 2
    assert math.isclose(first.loc["UP", "tb_return"], math.log(12.0 / 10.0))
    assert first.loc["DN", "tb_label"] == -1 and first.loc["DN", "tb_bars"] == 2
    assert math.isclose(first.loc["DN", "tb_return"], math.log(9.0 / 10.0))
    # neither barrier inside 3 bars: the time limit, return to the close 3 bars ahead
    assert first.loc["FL", "tb_label"] == 0 and first.loc["FL", "tb_bars"] == 3
    assert math.isclose(first.loc["FL", "tb_return"], math.log(10.2 / 10.0))
    # one bar touching both barriers counts as the stop-loss
    assert first.loc["BO", "tb_label"] == -1 and first.loc["BO", "tb_bars"] == 1
    # only bars whose time limit lies inside the data are labelled
    assert labels.groupby("symbol").size().to_dict() == {"BO": 1, "DN": 2, "FL": 1, "UP": 2}
    assert labels["tb_label"].dtype == np.int64 and labels["tb_bars"].dtype == np.int64


def test_triple_barrier_uses_atr_14_and_skips_its_warm_up() -> None:
    bars = synthetic_bars("EURUSD", timeframe="M5", start="2024-01-01", n=300, seed=9)
    labels = triple_barrier_labels(bars, max_bars=10)
    assert labels["time"].iloc[0] == bars["time"].iloc[14]  # ATR(14) first valid at bar 14
    assert labels["time"].iloc[-1] == bars["time"].iloc[-11]
    assert set(labels["tb_label"]) <= {-1, 0, 1}
    assert labels["tb_bars"].between(1, 10).all()


def test_triple_barrier_labels_depend_only_on_the_window_they_cover() -> None:
    bars = synthetic_bars("EURUSD", timeframe="M5", start="2024-01-01", n=300, seed=9)
    full = triple_barrier_labels(bars, max_bars=10)
    head = triple_barrier_labels(bars.iloc[:150], max_bars=10)
    pd.testing.assert_frame_equal(head, full.iloc[: len(head)], check_exact=True)


def test_all_labels_joins_direction_and_barrier_columns() -> None:
    bars = synthetic_bars("EURUSD", timeframe="M1", start="2024-01-01", n=200, seed=2)
    labels = all_labels(bars, max_bars=20)
    assert list(labels.columns) == [
        "symbol", "time", "event_timestamp", "forward_return", "label", "next_open_return",
        "tb_label", "tb_return", "tb_bars",
    ]  # fmt: skip
    assert len(labels) == 200 - 15  # default horizon: 15 M1 bars
    assert labels["tb_label"].isna().sum() == 14 + 5  # ATR warm-up, then beyond the data
